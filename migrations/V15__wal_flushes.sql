-- One row per running dispatcher. A dispatcher commits each batch of
-- events without waiting for the disk (synchronous_commit off, for that
-- transaction only), then acks the batch's event messages only after a
-- transaction of its own that does wait (synchronous_commit as
-- configured) has committed: that flushes the write-ahead log past every
-- batch committed before it. The waiting transaction must write something
-- (here: its row's time), or Postgres would not wait for the disk at its
-- commit. Rows of dispatchers gone for a day are deleted by the pruner.
CREATE TABLE wal_flushes (
    process    uuid PRIMARY KEY,
    flushed_at timestamptz NOT NULL
);
