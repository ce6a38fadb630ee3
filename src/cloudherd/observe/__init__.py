"""What cloudherd tells about itself: why each event happened (:mod:`.cause`), spans (:mod:`.tracing`), metrics
(:mod:`.metrics`) and logs (:mod:`.logs`).

It sits below every other package but ``settings``: the state writes an event's cause and trace id from here,
the engine opens the operations, the faces export what was gathered.  Nothing here talks to a database."""
