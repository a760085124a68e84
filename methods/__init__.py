"""Methods: one module (or package) per method family, each registering itself with the harness.

Adding a method means adding a module (or package) here — the registry finds every one — or
publishing a package with an entry point in the group ``harness.methods``. A method declares its
facts once (:class:`harness.facts.MethodFacts`), passed to ``register_method`` and set as the class's
``facts``; a trainable method registers its trainer beside itself (``register_trainer``).
"""
