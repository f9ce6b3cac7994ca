-- Stored positions belong to one incarnation of a topic: the broker's topic id (or, where the
-- broker reports none, its cluster id). A row of another incarnation, or of none (rows written
-- before this migration), is not a position in the topic as it is now: the aggregator reads
-- such a partition from its beginning and the ledger absorbs what it already counted.
ALTER TABLE consumer_offsets ADD COLUMN incarnation text;

-- Dead letters recorded in the transaction of the batch that found them, published to the
-- dead-letter topic after it commits and then forgotten: a batch written again after a crash or
-- a fence records nothing twice, and a letter is never lost between commit and publish.
CREATE TABLE dead_letter_outbox (
    consumer_group text NOT NULL,
    topic          text NOT NULL,
    incarnation    text NOT NULL,
    partition      integer NOT NULL,
    source_offset  bigint NOT NULL,
    key            bytea,
    value          bytea,
    reason         text NOT NULL,
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, incarnation, partition, source_offset)
);
