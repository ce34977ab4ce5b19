#!/bin/bash
# CPU attribution runs for issue 12 (quick carved part, attribution budget 6 s per set of rounds)
cd /tmp && mkdir -p attr && cd attr
for t in 2 1; do
  for m in resnet50 bert-base; do
    /usr/bin/time -v /tmp/fuseval-att bench /work/main/models/$m.onnx --quick --threads $t --slim-annotated -o $m-${t}t --force > $m-${t}t.txt 2> $m-${t}t.err
  done
done
echo done > finished
