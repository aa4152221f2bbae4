# The chart of scripts/bench_peers.sh: events per CPU-second and events/s of
# the wall time (replay from offset zero) per system and run, two bar panels
# one above the other.
#   gnuplot -c scripts/bench_peers_chart.gp DATA OUT.png "SUBTITLE"
# DATA: one run a line, tab-separated: "label" events_per_cpu_second events_per_wall_second
# (labels may hold \n). Linear scales, every bar labelled with its value:
# the gaps are the result, not an artefact of a log axis.
data = ARG1
out = ARG2
subtitle = ARG3
set terminal pngcairo size 1300,1000 font "sans,10"
set output out
set datafile separator "\t"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.8
set grid ytics
set xtics scale 0 font "sans,9"
set bmargin 4
set yrange [0:*]
set format y "%.0f"
set key off
set multiplot layout 2,1 title "kappa beside Kafka Streams and Apache Flink: the user-spend job\n".subtitle font "sans,12"
set title "events per CPU-second (input records / user+system CPU s)"
set ylabel "thousand events per CPU-second"
set offsets 0, 0, graph 0.08, 0
plot data using ($2 / 1000):xtic(1) linecolor rgb "#2f6db5", \
     '' using ($0):($2 / 1000):(sprintf("%.0fk", $2 / 1000)) with labels offset 0,0.8 font "sans,9"
set title "events/s of the wall time (input records / replay from offset zero, s)"
set ylabel "thousand events/s"
plot data using ($3 / 1000):xtic(1) linecolor rgb "#d2691e", \
     '' using ($0):($3 / 1000):(sprintf("%.0fk", $3 / 1000)) with labels offset 0,0.8 font "sans,9"
unset multiplot
