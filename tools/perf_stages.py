#!/usr/bin/env python3
"""Where a Funnel process's CPU goes, by stage and layer, from a perf profile:

    perf record -F 999 -g -p $(pgrep -f 'funnel serve') -o perf.data -- sleep 10   # under load
    perf script -i perf.data -F comm,ip,sym > perf.txt
    python3 tools/perf_stages.py perf.txt

Each sample counts once, under the first of the categories below (in order) that one of its
stack frames matches (mangled Swift names); the rest is "other".
"""
import collections,sys
stacks=[];cur=[]
for line in open(sys.argv[1]):  # perf script's text: a header line, then one frame a line
    line=line.rstrip()
    if not line:
        if cur: stacks.append(cur); cur=[]
        continue
    if not line.startswith((' ','\t')):
        cur=[]; continue
    parts=line.split(None,1)
    cur.append(parts[1] if len(parts)>1 else '?')
if cur: stacks.append(cur)
cats=[('json','JSONEncoder'),('json','jsonBytes'),('answer','Engine0A6answer'),('explain','FunnelPipelineC7explain'),('hnsw','HNSWIndexC6search'),('retrieve-other','FunnelPipelineC8retrieve'),
('gbdt','GBDTPredictor'),('features','RankingA0V7compute'),('rank-other','FunnelPipelineC4rank'),('mmr','MMR'),('rerank','rerank'),
('engine-recommend','EngineAAC9recommend'),('pipeline-recommend','FunnelPipelineC9recommend'),('recommender','RecommenderC'),('stageexec','StageExecutor'),
('hummingbird','Hummingbird'),('nio','NIO'),('syscall','do_syscall_64'),('kernel','[k]'),('dispatch','dispatch')]
c=collections.Counter()
for st in stacks:
    lab='other'
    for name,pat in cats:
        if any(pat in f for f in st): lab=name; break
    c[lab]+=1
N=len(stacks)
for k,v in c.most_common(): print(f"{100*v/N:5.1f}% {k}")
