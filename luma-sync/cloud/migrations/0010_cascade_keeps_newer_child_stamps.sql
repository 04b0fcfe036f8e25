-- A parent delete tombstones its live children with the parent's stamp OR the child's own,
-- whichever is newer (0004 gave them the parent's stamp only).
--
-- Why: a device that pulled a child written after the parent's delete (the delete reached the
-- server later) holds the child with a newer stamp than the parent's delete. If the parent is
-- then revived before that device pulls again, the device sees a live parent and a child
-- tombstone older than its copy, keeps the child, and differs from the server for good. A
-- tombstone at least as new as the child's last stamp is applied by every device (equal
-- stamps: the delete wins). A newer upsert of the child under a deleted parent is still
-- refused as missing_parent; under a revived parent it is applied as before.
-- Grandchildren get their parent's tombstone stamp or their own, whichever is newer.
CREATE OR REPLACE FUNCTION luma.tombstone_children(p_table text, p_row jsonb, p_hlc text) RETURNS void
LANGUAGE plpgsql SET search_path = '' AS $$
DECLARE
    ch record;
    r jsonb;
BEGIN
    FOR ch IN
        SELECT s.schema_name, s.table_name, p ->> 'column' AS col, p ->> 'ref' AS ref, p ->> 'schema' AS pschema
        FROM luma.sync_tables s, jsonb_array_elements(s.parents) p
        WHERE p ->> 'table' = p_table
        ORDER BY s.ord
    LOOP
        FOR r IN EXECUTE format(
            'UPDATE %I.%I t SET hlc = CASE WHEN t.hlc COLLATE "C" > $2 COLLATE "C" THEN t.hlc ELSE $2 END, '
            'deleted_at = now() '
            'WHERE t.%I = (SELECT r.%I FROM jsonb_populate_record(NULL::%I.%I, $1) r) AND t.deleted_at IS NULL '
            'RETURNING to_jsonb(t)',
            ch.schema_name, ch.table_name, ch.col, ch.ref, ch.pschema, p_table) USING p_row, p_hlc
        LOOP
            PERFORM luma.tombstone_children(ch.table_name, r, r ->> 'hlc');
        END LOOP;
    END LOOP;
END
$$;
