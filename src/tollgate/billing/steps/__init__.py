"""Steps: the pieces of billing writes that run inside a caller's transaction on rows it has locked
(``billing.locks``, in the order customer -> subscription -> invoice -> payment -> refund). A step
never opens a transaction and never calls a gateway; its name ends in ``_locked`` where it changes
rows. The public writes (``billing.services``) and the billing clock compose them."""
