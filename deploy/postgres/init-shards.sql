-- Runs once, when the Postgres volume is created (docker-entrypoint-initdb.d). The compose
-- stack runs on ledgerline (POSTGRES_DB); these are the shard databases for
-- SHARD_DATABASE_URLS once the cross-shard saga is deployed (docs/operations.md, "Shards").
CREATE DATABASE ledgerline_0;
CREATE DATABASE ledgerline_1;
CREATE DATABASE ledgerline_2;
CREATE DATABASE ledgerline_3;
