"""Storage of one vnode's key ranges, no Ray: hot entries in slabs (`memtable`), Parquet
segments (`segments`, read a row group at a time by `pages`), one range's store
(`range_store`) and the write-ahead log of durable tables (`wal`)."""
