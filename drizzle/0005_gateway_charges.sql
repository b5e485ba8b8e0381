CREATE TABLE "gateway_charges" (
	"operation_id" uuid PRIMARY KEY NOT NULL,
	"status" text NOT NULL,
	"gateway_charge_id" text,
	"decline_code" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "gateway_charges" ADD CONSTRAINT "gateway_charges_operation_id_operations_id_fk" FOREIGN KEY ("operation_id") REFERENCES "public"."operations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "gateway_charges_status_idx" ON "gateway_charges" USING btree ("status");--> statement-breakpoint
-- Gateway charge records move with their operation's shard: fence them like the operation.
CREATE OR REPLACE FUNCTION ledger_refuse_fenced_shard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  shard integer;
BEGIN
  IF TG_TABLE_NAME = 'wallets' THEN
    IF NEW.kind <> 'customer' THEN
      RETURN NEW; -- internal accounts belong to the database, not to a shard
    END IF;
    shard := get_byte(uuid_send(NEW.id), 0);
  ELSIF TG_TABLE_NAME = 'gateway_charges' THEN
    shard := get_byte(uuid_send(NEW.operation_id), 0);
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
CREATE TRIGGER gateway_charges_shard_fence BEFORE INSERT OR UPDATE ON gateway_charges
  FOR EACH ROW EXECUTE FUNCTION ledger_refuse_fenced_shard();
