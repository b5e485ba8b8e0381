CREATE TABLE "fenced_shards" (
	"logical_shard" smallint PRIMARY KEY NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "idempotency_keys" (
	"client_id" uuid NOT NULL,
	"key" text NOT NULL,
	"request_hash" text NOT NULL,
	"operation_id" uuid NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "idempotency_keys_client_id_key_pk" PRIMARY KEY("client_id","key")
);
--> statement-breakpoint
CREATE TABLE "saga_credits" (
	"operation_id" uuid PRIMARY KEY NOT NULL,
	"wallet_id" uuid NOT NULL,
	"outcome" text NOT NULL,
	"failure_code" text,
	"failure_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "shard_assignments" (
	"logical_shard" smallint PRIMARY KEY NOT NULL,
	"database_index" smallint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "transfer_sagas" (
	"operation_id" uuid PRIMARY KEY NOT NULL,
	"state" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
ALTER TABLE "ledger_entries" DROP CONSTRAINT "ledger_entries_operation_id_operations_id_fk";
--> statement-breakpoint
DROP INDEX "wallets_settlement_currency_uq";--> statement-breakpoint
ALTER TABLE "transfer_sagas" ADD CONSTRAINT "transfer_sagas_operation_id_operations_id_fk" FOREIGN KEY ("operation_id") REFERENCES "public"."operations"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "wallets_internal_kind_currency_uq" ON "wallets" USING btree ("kind","currency") WHERE "wallets"."kind" <> 'customer';