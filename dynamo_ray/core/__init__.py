"""Pure algorithms, no Ray and no I/O (riak_core's chash, vclock and hashtree): the ring and
its claims (`ring`), versions of a key (`versioning`), Merkle trees (`merkle`), reconciling
siblings (`merges`), value codecs and expiry frames (`codec`), membership views (`gossip`)."""
