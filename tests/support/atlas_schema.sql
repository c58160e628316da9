-- The Atlas global tables and Flyway's history table, as the SQL tests
-- create them on every throwaway cluster (primary and secondaries alike:
-- logical replication copies rows, not schema).
CREATE TABLE organization (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE app_user (
    id bigint PRIMARY KEY,
    organization_id bigint NOT NULL REFERENCES organization (id),
    email text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE user_preferences (
    user_id bigint PRIMARY KEY REFERENCES app_user (id),
    preferences jsonb NOT NULL DEFAULT '{}'
);
CREATE TABLE referential (
    code text PRIMARY KEY,
    label text NOT NULL
);
CREATE TABLE system_config (
    key text PRIMARY KEY,
    value text
);
CREATE TABLE flyway_schema_history (
    installed_rank integer PRIMARY KEY,
    version varchar(50),
    description varchar(200) NOT NULL,
    type varchar(20) NOT NULL,
    script varchar(1000) NOT NULL,
    checksum integer,
    installed_by varchar(100) NOT NULL,
    installed_on timestamp NOT NULL DEFAULT now(),
    execution_time integer NOT NULL,
    success boolean NOT NULL
);
INSERT INTO flyway_schema_history VALUES
    (1, '1', 'init', 'SQL', 'V1__init.sql', 1234567, 'atlas_admin', '2025-01-10 10:00:00', 120, true),
    (2, '2', 'user preferences', 'SQL', 'V2__user_preferences.sql', -98765, 'atlas_admin', '2025-03-02 09:30:00', 45, true);
