CREATE TABLE "shard_moves" (
	"id" uuid PRIMARY KEY NOT NULL,
	"logical_shard" smallint NOT NULL,
	"from_database" smallint NOT NULL,
	"to_database" smallint NOT NULL,
	"state" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
