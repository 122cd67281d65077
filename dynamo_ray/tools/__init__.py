"""Tools on top of the client: the `dynamo-ray` command line (`cli`), the shopping-cart
story (`demo`), the benchmark (`bench`) and the ring table and picture (`ringview`)."""
