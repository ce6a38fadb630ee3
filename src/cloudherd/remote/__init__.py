"""Remote work over SSH (asyncssh): keys, connections, running scripts and commands.

Import the modules themselves (``remote.ssh``, ``remote.pool``, ``remote.scripts``…): this package
imports nothing, so that rendering a script does not load the SSH library.
"""
