DROP INDEX "ledger_entries_operation_leg_uq";--> statement-breakpoint
CREATE UNIQUE INDEX "ledger_entries_operation_wallet_leg_uq" ON "ledger_entries" USING btree ("operation_id","wallet_id","leg");