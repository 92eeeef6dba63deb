#!/bin/sh
# The `merge` step of the word count, run by the polygear CLI worker for each
# job (`polygear -w -f merge -- sh merge.sh`): the job's data arrives on stdin
# as `count word` lines from every piece, the top words go back on stdout.
awk '/^#/ { next } { c[$2] += $1 } END { for (w in c) print c[w], w }' |
  grep -Ev ' (the|and|a|of|to|it|in|was|that|had|for|with|on|one|at|by|as|its|but|did|not|so|be|every|then|came|they|he|she|nothing|nobody|them|their|there|what|which|who|when|where|this|what|how|it|is|no|an|or|could|should|would|any|all|some|more|most|other|into|out|up|down|over|under|again|once|same|way|about|from|each|both|own|had|has|have|were|said|new|old|only|just|also|too|very|than|back|away|before|after|first|last|next|wanted|simply|asked|came|went|took|gave|left|found|opened|wrote|told|drew|cut|knew|spoke|did|does|do|done)$' |
  sort -k1,1nr -k2,2 | head -n 8
