//! Foreign-key order of tables.

use luma_model::TableSpec;

/// Sorts `specs` so that every table comes after the tables it references (parents whose
/// specs are not in the list are ignored). Ties keep a stable, name-based order.
pub fn parents_first(mut specs: Vec<TableSpec>) -> Vec<TableSpec> {
    specs.sort_by_key(|s| s.name);
    let mut out: Vec<TableSpec> = Vec::with_capacity(specs.len());
    while !specs.is_empty() {
        let ready = specs.iter().position(|s| {
            s.parents.iter().all(|p| {
                p.table == s.name
                    || out.iter().any(|o| o.name == p.table)
                    || !specs.iter().any(|o| o.name == p.table)
            })
        });
        // A cycle (which the built-in tables do not have) is broken by taking the first table.
        let i = ready.unwrap_or(0);
        out.push(specs.remove(i));
    }
    out
}

/// Depth of each table: 0 for tables without parents, else 1 + the deepest parent.
pub fn depths(specs: &[TableSpec]) -> Vec<(&'static str, usize)> {
    let ordered = parents_first(specs.to_vec());
    let mut out: Vec<(&'static str, usize)> = Vec::new();
    for s in ordered {
        let d = s
            .parents
            .iter()
            .filter_map(|p| out.iter().find(|(n, _)| *n == p.table).map(|(_, d)| d + 1))
            .max()
            .unwrap_or(0);
        out.push((s.name, d));
    }
    out
}
