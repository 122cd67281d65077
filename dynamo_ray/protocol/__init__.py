"""The protocol: Dynamo's state machines over one seam (`transport`), with no Ray in them.

A request's router, a vnode, a node's maintenance (gossip, hinted handoff, anti-entropy) and
membership changes reach each other only through a `transport.Transport` (a call to an
address with a deadline, answered by a reply or a typed failure) and read the time only from
its `Clock`. The Ray runtime (`dynamo_ray.runtime`) implements the seam with actors; the
simulator (`dynamo_ray.sim`) implements it in one process, driven by a seed.
"""
