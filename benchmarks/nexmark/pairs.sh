# Sourced by ckpairs.sh and p2pairs.sh: N pairs of runs of two commands on a noisy machine,
# alternating which runs first; prints each pair's ratio and their median.
#   pairs N LABEL_A RUN_A LABEL_B RUN_B RATIO_LABEL NUMERATOR   (NUMERATOR: a or b)
# RUN_A / RUN_B are shell functions that print wall seconds.
pairs() {
  local n=$1 la=$2 ra=$3 lb=$4 rb=$5 what=$6 num=$7 ratios=() a b r i
  for i in $(seq "$n"); do
    if [ $((i % 2)) = 1 ]; then a=$($ra); b=$($rb); else b=$($rb); a=$($ra); fi
    if [ "$num" = a ]; then r=$(echo "scale=4; $a / $b" | bc); else r=$(echo "scale=4; $b / $a" | bc); fi
    ratios+=("$r")
    echo "pair $i: $la $a $lb $b $what $r"
  done
  printf "%s\n" "${ratios[@]}" | sort -n | awk -v w="$what" '{a[NR] = $1}
    END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2;
         print "median " w, m, "min", a[1], "max", a[NR]}'
}
