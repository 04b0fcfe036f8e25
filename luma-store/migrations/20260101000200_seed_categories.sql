-- The six pattern categories (local reference data).
INSERT INTO categories (id, name) VALUES
    (1, 'Ambient'),
    (2, 'Rhythmic'),
    (3, 'Accent'),
    (4, 'Sweep'),
    (5, 'Strobe'),
    (6, 'Color');
