CREATE TABLE "api_keys" (
	"id" uuid PRIMARY KEY NOT NULL,
	"client_id" uuid NOT NULL,
	"key_hash" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"revoked_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "clients" (
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"rate_limits" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ledger_entries" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"id" uuid NOT NULL,
	"operation_id" uuid NOT NULL,
	"wallet_id" uuid NOT NULL,
	"leg" text NOT NULL,
	"amount" bigint NOT NULL,
	"balance_after" bigint,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ledger_entries_sign" CHECK (("ledger_entries"."leg" = 'debit' AND "ledger_entries"."amount" < 0) OR ("ledger_entries"."leg" = 'credit' AND "ledger_entries"."amount" > 0))
);
--> statement-breakpoint
CREATE TABLE "operations" (
	"id" uuid PRIMARY KEY NOT NULL,
	"client_id" uuid NOT NULL,
	"type" text NOT NULL,
	"status" text DEFAULT 'pending' NOT NULL,
	"amount" bigint NOT NULL,
	"currency" text NOT NULL,
	"from_wallet_id" uuid,
	"to_wallet_id" uuid NOT NULL,
	"reference" text,
	"payment_method" text,
	"idempotency_key" text NOT NULL,
	"request_hash" text NOT NULL,
	"failure_code" text,
	"failure_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone,
	CONSTRAINT "operations_amount_positive" CHECK ("operations"."amount" > 0),
	CONSTRAINT "operations_terminal_consistent" CHECK (("operations"."status" IN ('succeeded', 'failed')) = ("operations"."completed_at" IS NOT NULL))
);
--> statement-breakpoint
CREATE TABLE "outbox" (
	"seq" bigserial PRIMARY KEY NOT NULL,
	"event_id" uuid NOT NULL,
	"type" text NOT NULL,
	"key" text NOT NULL,
	"payload" jsonb NOT NULL,
	"operation_id" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"sent_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "wallets" (
	"id" uuid PRIMARY KEY NOT NULL,
	"kind" text DEFAULT 'customer' NOT NULL,
	"client_id" uuid,
	"currency" text NOT NULL,
	"status" text DEFAULT 'active' NOT NULL,
	"balance" bigint DEFAULT 0 NOT NULL,
	"held" bigint DEFAULT 0 NOT NULL,
	"reference" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "wallets_balance_nonnegative" CHECK ("wallets"."balance" >= 0),
	CONSTRAINT "wallets_held_within_balance" CHECK ("wallets"."held" >= 0 AND "wallets"."held" <= "wallets"."balance"),
	CONSTRAINT "wallets_kind_owner" CHECK (("wallets"."kind" = 'customer') = ("wallets"."client_id" IS NOT NULL))
);
--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_client_id_clients_id_fk" FOREIGN KEY ("client_id") REFERENCES "public"."clients"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_operation_id_operations_id_fk" FOREIGN KEY ("operation_id") REFERENCES "public"."operations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_wallet_id_wallets_id_fk" FOREIGN KEY ("wallet_id") REFERENCES "public"."wallets"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "api_keys_key_hash_uq" ON "api_keys" USING btree ("key_hash");--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_operation_leg_uq" ON "ledger_entries" USING btree ("operation_id","leg");--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_id_uq" ON "ledger_entries" USING btree ("id");--> statement-breakpoint
CREATE INDEX "ledger_entries_wallet_seq_idx" ON "ledger_entries" USING btree ("wallet_id","seq");--> statement-breakpoint
CREATE UNIQUE INDEX "operations_client_idempotency_uq" ON "operations" USING btree ("client_id","idempotency_key");--> statement-breakpoint
CREATE INDEX "operations_open_idx" ON "operations" USING btree ("created_at") WHERE "operations"."status" IN ('pending', 'processing');--> statement-breakpoint
CREATE UNIQUE INDEX "outbox_event_id_uq" ON "outbox" USING btree ("event_id");--> statement-breakpoint
CREATE INDEX "outbox_unsent_idx" ON "outbox" USING btree ("seq") WHERE "outbox"."sent_at" IS NULL;--> statement-breakpoint
CREATE UNIQUE INDEX "outbox_operation_uq" ON "outbox" USING btree ("operation_id");--> statement-breakpoint
CREATE INDEX "wallets_client_idx" ON "wallets" USING btree ("client_id");--> statement-breakpoint
CREATE UNIQUE INDEX "wallets_settlement_currency_uq" ON "wallets" USING btree ("currency") WHERE "wallets"."kind" = 'settlement';