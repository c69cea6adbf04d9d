"""berth's state in SQLite (WAL mode) under --data-root: one database, migrations, and one
repository module per group of tables. Writing happens only inside ``Database.transaction``."""
