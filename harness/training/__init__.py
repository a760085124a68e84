"""Training in the harness: the trainer contract (:mod:`.contract`), recipes (:mod:`.recipes`) and the shared loop
(:mod:`.loop`). Importing this package imports no torch; the loop's modules do."""
