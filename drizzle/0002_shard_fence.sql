-- Refuses writes to rows of fenced logical shards (moving or moved away from this database),
-- so a process still routing by an old shard map cannot write where the shard no longer lives.
CREATE FUNCTION ledger_refuse_fenced_shard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  shard integer;
BEGIN
  IF TG_TABLE_NAME = 'wallets' THEN
    IF NEW.kind <> 'customer' THEN
      RETURN NEW; -- internal accounts belong to the database, not to a shard
    END IF;
    shard := get_byte(uuid_send(NEW.id), 0);
  ELSIF TG_TABLE_NAME = 'saga_credits' THEN
    shard := get_byte(uuid_send(NEW.wallet_id), 0);
  ELSIF TG_TABLE_NAME = 'idempotency_keys' THEN
    shard := get_byte(sha256(convert_to(NEW.client_id::text, 'UTF8') || '\x00'::bytea || convert_to(NEW.key, 'UTF8')), 0);
  ELSE
    shard := get_byte(uuid_send(NEW.id), 0);
  END IF;
  IF EXISTS (SELECT 1 FROM fenced_shards WHERE logical_shard = shard) THEN
    RAISE EXCEPTION 'logical shard % is fenced in this database (moving or moved)', shard USING ERRCODE = 'LL001';
  END IF;
  RETURN NEW;
END
$$;
--> statement-breakpoint
CREATE TRIGGER wallets_shard_fence BEFORE INSERT OR UPDATE ON wallets
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_fenced_shard();
--> statement-breakpoint
CREATE TRIGGER operations_shard_fence BEFORE INSERT OR UPDATE ON operations
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_fenced_shard();
--> statement-breakpoint
CREATE TRIGGER idempotency_keys_shard_fence BEFORE INSERT OR UPDATE ON idempotency_keys
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_fenced_shard();
--> statement-breakpoint
CREATE TRIGGER saga_credits_shard_fence BEFORE INSERT OR UPDATE ON saga_credits
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_fenced_shard();
