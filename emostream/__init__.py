"""The ``emostream`` command line: a dispatcher to the commands of each part."""
