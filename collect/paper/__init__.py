"""
Paper forms (评议表): numbered forms with signed serial QR codes, the issuance ledger, keyed and
scanned entry. See docs/paper.md. Pure serial arithmetic is in `serials`; everything that reads
or writes the store is here too, never in `collect/channels/` (adapters do not touch the store).
"""
