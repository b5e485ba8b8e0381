ALTER TABLE "operations" ADD COLUMN "request_id" text;--> statement-breakpoint
ALTER TABLE "operations" ADD COLUMN "traceparent" text;--> statement-breakpoint
ALTER TABLE "outbox" ADD COLUMN "request_id" text;--> statement-breakpoint
ALTER TABLE "outbox" ADD COLUMN "traceparent" text;