"""`dynamo_ray.data`: Ray Data in and out of tables (the public name of `client.data`).

    ds.write_datasink(TableDatasink(table, key_column="id"))   # a Dataset into a table
    read_table(table)                                           # a table as a Dataset
    ds.map_batches(lookup(table, key_column="text"))            # add each row's cached value
"""

from .client.data import TableDatasink, lookup, read_table

__all__ = ["TableDatasink", "lookup", "read_table"]
