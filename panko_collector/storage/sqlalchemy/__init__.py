"""The SQL backend's parts, one concern each; ``storage.impl_sqlalchemy.Connection``
puts them together behind Panko's contract.

The data flow: ``prepare`` checks and converts events into rows, ``write``
inserts them (``tables`` describes where); ``filters`` turns a query into
SQL conditions that ``read`` runs; ``expiry`` deletes what is too old;
``schema`` creates and migrates the tables; ``engine`` opens the database
and ``errors`` says what its failures mean. Only ``Connection`` holds state
(the engine and the event type cache): every function here takes what it
needs as arguments.

The modules import the SQLAlchemy library absolutely (``import sqlalchemy``),
which this package's name does not shadow.
"""
