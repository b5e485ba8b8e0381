-- The shard fence on the hot tables (wallets, operations, idempotency_keys) checks each
-- statement's rows at once instead of row by row: group commit and batched accept write
-- hundreds of rows per statement, and a per-row trigger cost a query per row. Same rule
-- (0002): a write that touches a row of a fenced logical shard fails with SQLSTATE LL001 and
-- rolls back its transaction. No fenced shard (the common case) costs one index probe per statement.
CREATE FUNCTION ledger_refuse_fenced_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  shard integer;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM fenced_shards) THEN
    RETURN NULL;
  END IF;
  IF TG_TABLE_NAME = 'wallets' THEN
    -- internal accounts belong to the database, not to a shard
    SELECT f.logical_shard INTO shard FROM fence_rows n JOIN fenced_shards f ON f.logical_shard = get_byte(uuid_send(n.id), 0)
      WHERE n.kind = 'customer' LIMIT 1;
  ELSIF TG_TABLE_NAME = 'idempotency_keys' THEN
    SELECT f.logical_shard INTO shard FROM fence_rows n JOIN fenced_shards f
      ON f.logical_shard = get_byte(sha256(convert_to(n.client_id::text, 'UTF8') || '\x00'::bytea || convert_to(n.key, 'UTF8')), 0)
      LIMIT 1;
  ELSE
    SELECT f.logical_shard INTO shard FROM fence_rows n JOIN fenced_shards f ON f.logical_shard = get_byte(uuid_send(n.id), 0) LIMIT 1;
  END IF;
  IF shard IS NOT NULL THEN
    RAISE EXCEPTION 'logical shard % is fenced in this database (moving or moved)', shard USING ERRCODE = 'LL001';
  END IF;
  RETURN NULL;
END
$$;
--> statement-breakpoint
DROP TRIGGER wallets_shard_fence ON wallets;
--> statement-breakpoint
DROP TRIGGER operations_shard_fence ON operations;
--> statement-breakpoint
DROP TRIGGER idempotency_keys_shard_fence ON idempotency_keys;
--> statement-breakpoint
-- A trigger with a transition table serves one event, hence two per table.
CREATE TRIGGER wallets_shard_fence_insert AFTER INSERT ON wallets
  REFERENCING NEW TABLE AS fence_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_fenced_rows();
--> statement-breakpoint
CREATE TRIGGER wallets_shard_fence_update AFTER UPDATE ON wallets
  REFERENCING NEW TABLE AS fence_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_fenced_rows();
--> statement-breakpoint
CREATE TRIGGER operations_shard_fence_insert AFTER INSERT ON operations
  REFERENCING NEW TABLE AS fence_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_fenced_rows();
--> statement-breakpoint
CREATE TRIGGER operations_shard_fence_update AFTER UPDATE ON operations
  REFERENCING NEW TABLE AS fence_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_fenced_rows();
--> statement-breakpoint
CREATE TRIGGER idempotency_keys_shard_fence_insert AFTER INSERT ON idempotency_keys
  REFERENCING NEW TABLE AS fence_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_fenced_rows();
--> statement-breakpoint
CREATE TRIGGER idempotency_keys_shard_fence_update AFTER UPDATE ON idempotency_keys
  REFERENCING NEW TABLE AS fence_rows FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_fenced_rows();
