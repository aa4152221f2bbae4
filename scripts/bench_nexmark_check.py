#!/usr/bin/env python3
"""Checks that kappa and Flink SQL answered the same Nexmark question (scripts/bench_nexmark_peers.sh).

  bench_nexmark_check.py q5|q7 KAPPA.jsonl FLINK.jsonl
  bench_nexmark_check.py same KAPPA.jsonl OTHER_KAPPA.jsonl

KAPPA.jsonl: `kappa consume --print` of the job's output topic (WindowAggregate rows; q5 keyed
"<auction>|<window_end_ms>" with `count`, q7 keyed "0|<window_end_ms>" with `max` and `argmax`
[auction, bidder]). FLINK.jsonl: the values of bench/peers/flink-nexmark's output topic (q5:
auction, num, window_end; q7: auction, price, bidder, dateTime, extra, window_end), window_end a
UTC timestamp without zone.

q5: the same windows, and per window the same auctions with the same bid counts (kappa's top 1
with ties against Flink's num >= max(num)).
q7: the same windows; per window Flink's rows all carry one price, kappa's `max`; kappa's argmax
(auction, bidder) is the smallest of Flink's bids at that price. Flink's q7 joins each bid with
every window whose end is within [dateTime, dateTime + 10 s] (BETWEEN includes both ends), so a
bid exactly at a window's end, at that window's max price, is joined with it too although it
belongs to the next window; those rows are left out (and counted).

same: two kappa runs of one query (kappa's FlatBuffers input and the JSON one) wrote the same
rows: same keys and values, the lineage offsets (first_offset, last_offset: offsets of the
repartition topic, which depend on how the partitions interleaved) aside.

Prints one line of what was compared and exits 0, or prints the differences and exits 1.
"""
import datetime
import json
import sys


def utc_ms(text):
    t = datetime.datetime.fromisoformat(text.replace('Z', '+00:00'))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return round(t.timestamp() * 1000)


def read_jsonl(path):
    out = []
    for line in open(path, encoding='utf-8'):
        line = line.strip()
        if line.startswith('{'):
            out.append(json.loads(line))
    return out


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ('q5', 'q7', 'same'):
        print(__doc__, file=sys.stderr)
        return 2
    query, kappa_path, flink_path = sys.argv[1:]
    problems = []
    if query == 'same':
        def rows(records):
            out = []
            for r in records:
                v = dict(r['value'])
                v.pop('first_offset', None)
                v.pop('last_offset', None)
                out.append(json.dumps([r['key'], v], sort_keys=True))
            return sorted(out)
        a, b = rows(read_jsonl(kappa_path)), rows(read_jsonl(flink_path))
        if a != b:
            print(f'the two kappa runs differ: {len(a)} and {len(b)} rows; first differences:')
            for x in sorted(set(a) ^ set(b))[:6]:
                print('  ' + x)
            return 1
        print(f'the same {len(a)} rows')
        return 0
    kappa = [r['value'] for r in read_jsonl(kappa_path)]
    flink = read_jsonl(flink_path)
    if query == 'q5':
        k, f = {}, {}
        for v in kappa:
            k.setdefault(v['window_end_ms'], {})[int(v['key'])] = v['count']
        for r in flink:
            f.setdefault(utc_ms(r['window_end']), {})[r['auction']] = r['num']
        for end in sorted(set(k) | set(f)):
            if k.get(end) != f.get(end):
                problems.append(f'window ending {end}: kappa {k.get(end)}, Flink {f.get(end)}')
        summary = (f'q5: the same {len(k)} windows, the same {sum(len(a) for a in k.values())} '
                   f'(auction, count) top rows ({sum(len(a) > 1 for a in k.values())} windows with a tie)')
    else:
        k, f = {}, {}
        at_end = 0
        for v in kappa:
            end = v['window_end_ms']
            if end in k:
                problems.append(f'kappa has two rows for the window ending {end}')
            k[end] = (v['max'], tuple(v['argmax']))
        for r in flink:
            end = utc_ms(r['window_end'])
            if utc_ms(r['dateTime']) >= end:
                at_end += 1
                continue
            f.setdefault(end, []).append((r['price'], r['auction'], r['bidder']))
        ties = 0
        for end in sorted(set(k) | set(f)):
            if end not in k or end not in f:
                problems.append(f'window ending {end}: kappa {k.get(end)}, Flink {f.get(end)}')
                continue
            prices = {p for p, _, _ in f[end]}
            smallest = min((a, b) for _, a, b in f[end])
            ties += len(f[end]) > 1
            if prices != {k[end][0]} or k[end][1] != smallest:
                problems.append(f'window ending {end}: kappa max {k[end][0]} by {k[end][1]}, '
                                f'Flink {sorted(f[end])}')
        summary = (f'q7: the same {len(k)} windows with the same max price; kappa\'s (auction, bidder) '
                   f'the smallest of Flink\'s bids at it ({ties} windows with a tie; {at_end} Flink rows '
                   f'of a bid exactly at the window end left out)')
    if problems:
        print(f'{query}: kappa and Flink differ in {len(problems)} windows:')
        for p in problems[:10]:
            print('  ' + p)
        return 1
    print(summary)
    return 0


if __name__ == '__main__':
    sys.exit(main())
