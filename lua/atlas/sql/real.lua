-- atlas.sql.real: the real SQL backend is libpq itself (engine/pq.c), whose
-- connections already have the backend's functions; this name makes it one
-- of the interface's two backends, like atlas.sql.mock.
return require "atlas.pq"
