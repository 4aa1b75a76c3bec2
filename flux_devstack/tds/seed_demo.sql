-- The local stack's demo source: a small titles table (the sample bundle adds more).
-- Loaded at every start-up: idempotent.
CREATE TABLE IF NOT EXISTS dbo.titles (
    title_id BIGINT NOT NULL,
    title NVARCHAR(200) NOT NULL,
    genre NVARCHAR(50),
    runtime_minutes INT,
    budget DECIMAL(18,2),
    released DATE,
    updated_at DATETIME2(7) NOT NULL,
    is_original BIT NOT NULL
);
DELETE FROM dbo.titles;
INSERT INTO dbo.titles VALUES (1, N'The Long Night', N'drama', 128, '12500000.00', '2021-03-05', '2026-01-02 03:04:05.1234567', 1);
INSERT INTO dbo.titles VALUES (2, N'Café Society 🎬', N'comedy', 96, '3000000.50', '2019-11-20', '2026-01-02 03:04:05.0000001', 0);
INSERT INTO dbo.titles VALUES (3, N'Tabs	and
newlines', NULL, NULL, NULL, NULL, '2026-01-02 00:00:00', 0);
INSERT INTO dbo.titles VALUES (4, N'', N'', 0, '0.00', '0001-01-01', '0001-01-01 00:00:00', 1);
