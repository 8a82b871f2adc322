#!/bin/sh
# Writes the table of unit entry points for N units.
n="$1"
echo '#include <stdint.h>'
i=1; while [ "$i" -le "$n" ]; do echo "int unit_$i(uint32_t *sum);"; i=$((i + 1)); done
echo "typedef int (*unit_fn)(uint32_t *sum);"
echo "const unsigned unit_count = $n;"
echo "const unit_fn unit_table[] = {"
i=1; while [ "$i" -le "$n" ]; do echo "    unit_$i,"; i=$((i + 1)); done
echo "};"
