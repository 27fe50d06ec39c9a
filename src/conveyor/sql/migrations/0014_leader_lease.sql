-- The maintenance leader as a lease in a row, not a session advisory lock: a session lock
-- cannot be held through a transaction-mode pooler (PgBouncer hands every transaction to
-- whichever server connection is free), a row renewed by the database clock can. A leader that
-- dies stops renewing and another worker takes the row once `expires_at` has passed.
CREATE TABLE conveyor.leader (
    name       text        PRIMARY KEY,
    holder     text        NOT NULL,
    elected_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
