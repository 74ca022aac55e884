"""A plugin that fails at import with an error that is not an ImportError, as a plugin with a
bug or a missing configuration would. Its `broken` backend, `broken` executor and `broken-tool`
command point here."""

raise RuntimeError("this plugin needs EMO_TEST_BROKEN_CONFIG")
