"""The client surface, on top of the runtime: `store` (start, connect, Store), `table` (Table,
AsyncTable, GetResult, Context), `routing` (through a coordinator, or coordinated here),
`cache` (dr.cached), `data` (Ray Data in and out), `progress` (bars on long work)."""
