"""Methods: one module (or package) per method family, each registering itself with the harness.

Adding a method means adding a module here and naming it in ``harness.registry.BUILTIN_METHOD_MODULES``,
or publishing a package with an entry point in the group ``harness.methods``.
"""
