// The log archive: kappa's durable copy of Kafka history (tiered storage),
// so a version can replay from offset zero long after Kafka's retention
// deleted the records, at the speed of a sequential file read.
//
// Layout: <root>/<topic>/<partition>/<base offset, 20 digits>.kseg. A
// partition is a sequence of segment files; a segment is a sequence of
// blocks; a block holds up to ~1 MiB of records in offset order, compressed
// with LZ4; its header carries the XXH3-64 of the payload and of itself
// (the byte layout: archive/segment_format.h).
//
// The data is its own progress record: a block is appended with one write()
// and made durable with fdatasync(), and the archive's end offset is the
// last offset of the last complete, checksum-valid block. A crash (kill -9)
// can leave only a torn block at the very tail of the last segment (shorter
// than its header, or than the size its header gives), which the next
// writer truncates; the records in it are fetched again from Kafka. So the
// progress is committed atomically with the data it covers. Readers may run
// while a writer appends: a reader stops at the first tail block that is
// not complete yet. A complete block whose header or payload checksum fails,
// anywhere, is Corruption naming the file and byte: never cut, never
// skipped (`kappa archive --repair`, archive/archive_repair.h, refetches it).
// Offsets inside a partition increase strictly but may skip (transaction
// markers, compaction), exactly as in Kafka.
//
// Why segment files and not RocksDB: a replay reads a partition once, front
// to back. Blocks of ~1 MiB read with pread and decompressed with LZ4 run at
// GB/s with no per-record lookups; the block headers are the offset index (a
// seek reads only headers, 56 bytes per block). RocksDB would add a key per
// record, the memtable and compaction rewrites for an append-only log.
#pragma once

// One concept per header; this one keeps callers to one include.
#include "archive/archive_record.h"  // ArchiveRecord, ArchiveHeader
#include "archive/archive_range.h"   // ArchiveRange, ArchivedPartitions, ArchiveRanges
#include "archive/archive_reader.h"  // ArchiveReader
#include "archive/archive_writer.h"  // ArchiveWriter
