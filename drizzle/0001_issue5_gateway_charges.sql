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
CREATE INDEX "gateway_charges_status_idx" ON "gateway_charges" USING btree ("status");