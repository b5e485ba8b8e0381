-- Two unique indexes that repeated a guarantee another one gives, each costing index writes on
-- the settlement's critical path (bulk settlement 9,500-9,800 -> 11,200-11,400 transfers/s with
-- both gone, bench/profile-api.ts --bulk 4, alternating runs):
-- * operations (client_id, idempotency_key): idempotency_keys' primary key already names one
--   operation per (client, key), and an operation is only written with the id of its key's
--   committed claim (src/api/accept-transfer-batch.ts claims before writing elsewhere).
-- * ledger_entries (id): a fresh UUIDv7 per entry that no query looks up; what keeps an entry
--   from being written twice is ledger_entries_operation_wallet_leg_uq, which stays, and shard
--   moves now use it as their conflict target.
-- Deploy order with several shard databases: run this only once no API process of an earlier
-- version is left. Those wrote a bulk batch's operations before claiming its keys, and without
-- the first index two such batches racing with one key could each write an operation.
-- Plain DROP INDEX (migrations run in a transaction) briefly locks the two tables.
DROP INDEX "ledger_entries_id_uq";--> statement-breakpoint
DROP INDEX "operations_client_idempotency_uq";