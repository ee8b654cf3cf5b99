#!/usr/bin/env python3
# Writes the HTTP API's OpenAPI document: docs/openapi.json and the copy the server serves
# (Sources/FunnelServer/OpenAPIDocument.swift). Edit the API here, run it, commit both;
# FunnelServerTests checks that the two agree and that every documented route is answered.
import json, os
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
S=lambda r: {"$ref": "#/components/schemas/"+r}
def resp(desc, schema=None, ctype="application/json"):
    r={"description":desc}
    if schema is not None: r["content"]={ctype:{"schema":schema}}
    return r
err=lambda d: resp(d, S("Error"))
E={"400":err("A malformed parameter or body"),"404":err("Unknown model, version, user, item or route")}
def q(name, schema, desc, required=False):
    return {"name":name,"in":"query","required":required,"schema":schema,"description":desc}
def p(name, desc):
    return {"name":name,"in":"path","required":True,"schema":{"type":"string","minLength":1},"description":desc}
K=q("k",{"type":"integer","minimum":1,"maximum":100,"default":10},"How many items (at most the server's --max-k)")
FILTER=q("filter",{"type":"array","items":{"type":"string"}},"Attribute filter clauses: category=A|B, category!=C, NAME>=X, NAME<=X, created>=DATE")
FILTER["style"]="form"; FILTER["explode"]=True
VERSION=q("version",{"type":"string"},"Pin the request to a loaded version (v3)")
rec_params=[q("user",{"type":"string","minLength":1},"The user id",True),K,
  q("touched",{"type":"string"},"Comma-separated items a new user touched"),
  q("exclude",{"type":"string"},"Comma-separated items never to return"),FILTER,
  q("explain",{"type":"boolean"},"Include each item's explanation (default true)"),
  q("include_seen",{"type":"boolean"},"Allow items the user has interacted with"),
  q("candidates",{"type":"integer","minimum":1,"maximum":10000},"Candidates retrieved (default: the bundle's)"),
  q("ef",{"type":"integer","minimum":1,"maximum":100000},"HNSW beam width (default: the bundle's)"),
  q("max_per_category",{"type":"integer","minimum":1,"maximum":10000},"At most this many items of one category (default: the bundle's)")]
answer=resp("The ranked items, the model and version that answered, the path taken and per-stage times", S("Answer"))
name=p("name","The served model's name")
ver={"name":"version","in":"path","required":True,"schema":{"type":"string","pattern":"^v?[1-9][0-9]{0,8}$"},"description":"A version: 3 or v3"}
item=p("item","An item id")
W={"401":err("The route needs the API key"),"503":err("Not ready")}
def body(schema, required=True): return {"required":required,"content":{"application/json":{"schema":schema}}}
paths={
 "/livez":{"get":{"summary":"The process is up","operationId":"livez","responses":{"200":resp("Alive",{"type":"object"})}}},
 "/readyz":{"get":{"summary":"Ready only when a validated model is loaded","operationId":"readyz","responses":{"200":resp("Ready",{"type":"object","properties":{"status":{"type":"string"},"model":{"type":"string"},"versions":{"type":"array","items":{"type":"string"}}}}),"503":err("No validated model is loaded")}}},
 "/health":{"get":{"summary":"Plain-text health with the served versions","operationId":"health","responses":{"200":resp("ok and the versions",{"type":"string"},"text/plain")}}},
 "/metrics":{"get":{"summary":"Prometheus metrics: HTTP status and latency, stage latencies, fallbacks","operationId":"metrics","responses":{"200":resp("Prometheus text",{"type":"string"},"text/plain")}}},
 "/openapi.json":{"get":{"summary":"This document","operationId":"openapi","responses":{"200":resp("The OpenAPI document",{"type":"object"})}}},
 "/recommend":{"get":{"summary":"Recommendations from the production model (the route of before /v1)","operationId":"legacyRecommend","parameters":rec_params+[VERSION],"responses":{"200":answer,**E}}},
 "/similar":{"get":{"summary":"Items similar to an item (the route of before /v1)","operationId":"legacySimilar","parameters":[q("item",{"type":"string","minLength":1},"The item id",True),K,VERSION],"responses":{"200":answer,**E}}},
 "/search":{"get":{"summary":"Text search (the route of before /v1)","operationId":"legacySearch","parameters":[q("q",{"type":"string","minLength":1},"The query text",True),K,q("mode",{"type":"string","enum":["lexical","hybrid"]},"lexical: BM25 only; hybrid: BM25 fused with embedding neighbours"),VERSION],"responses":{"200":answer,**E}}},
 "/v1/models":{"get":{"summary":"The served model, its versions and their states","operationId":"listModels","responses":{"200":resp("Models",{"type":"object","required":["models"],"properties":{"models":{"type":"array","items":S("Model")}}})}}},
 "/v1/models/{name}":{"parameters":[name],"get":{"summary":"One model: versions, states, what is loaded, the last refused version","operationId":"getModel","responses":{"200":resp("The model",S("Model")),**E}}},
 "/v1/models/{name}/recommend":{"parameters":[name],
   "get":{"summary":"Top-k for a known user, or a new user from touched items","operationId":"recommend","parameters":rec_params,"responses":{"200":answer,**E}},
   "post":{"summary":"Top-k with the rich request body","operationId":"recommendPost","requestBody":body(S("RecommendRequest")),"responses":{"200":answer,**E}}},
 "/v1/models/{name}/versions/{version}/recommend":{"parameters":[name,ver],
   "get":{"summary":"Top-k from a pinned version","operationId":"recommendPinned","parameters":rec_params,"responses":{"200":answer,**E}},
   "post":{"summary":"Top-k from a pinned version, rich body","operationId":"recommendPinnedPost","requestBody":body(S("RecommendRequest")),"responses":{"200":answer,**E}}},
 "/v1/models/{name}/items/{item}/similar":{"parameters":[name,item],"get":{"summary":"Items nearest to an item, re-ranked","operationId":"similar","parameters":[K,FILTER],"responses":{"200":answer,**E}}},
 "/v1/models/{name}/search":{"parameters":[name],"get":{"summary":"Text search over titles, text and categories","operationId":"search","parameters":[q("q",{"type":"string","minLength":1},"The query text",True),K,q("mode",{"type":"string","enum":["lexical","hybrid"]},"lexical or hybrid (default)")],"responses":{"200":answer,**E}}},
 "/v1/models/{name}/query":{"parameters":[name],"post":{"summary":"Top-k for a query vector in the item-embedding space","operationId":"query","requestBody":body(S("QueryRequest")),"responses":{"200":answer,**E,"413":err("The body is over the size limit")}}},
 "/v1/models/{name}/items/{item}":{"parameters":[name,item],
   "get":{"summary":"An item as served now","operationId":"getItem","responses":{"200":resp("The item",S("Item")),**E}},
   "put":{"summary":"Add or change an item: embedded from its attributes, in the index for the next request","operationId":"upsertItem","requestBody":body(S("ItemAttributes")),"responses":{"200":resp("Durable and applied",S("WriteResult")),**E,**W,"413":err("The body is over the size limit")}},
   "delete":{"summary":"Delete an item: no answer returns it again","operationId":"deleteItem","responses":{"200":resp("Durable and applied",S("WriteResult")),**E,**W}}},
 "/v1/models/{name}/users/{user}":{"parameters":[name,p("user","A user id")],"get":{"summary":"A user as served now: trained or not, their history's length and newest items","operationId":"getUser","responses":{"200":resp("The user",S("User")),**E}}},
 "/v1/models/{name}/interactions":{"parameters":[name],"post":{"summary":"Append interactions: histories and ranking statistics move at once","operationId":"appendInteractions","requestBody":body({"type":"array","items":S("Interaction"),"minItems":1}),"responses":{"200":resp("Durable and applied",S("WriteResult")),**E,**W,"413":err("The body is over the size limit")}}},
 "/v1/models/{name}/versions/{version}/promote":{"parameters":[name,ver],"post":{"summary":"Make a version production, or a canary with {\"canary\": 0.1}","operationId":"promote","requestBody":body(S("PromoteRequest"),False),"responses":{"200":resp("The model after the change",S("Model")),**E,**W,"409":err("Refused: the transition is invalid, the version failed to load, or this server serves a folder")}}},
 "/v1/models/{name}/versions/{version}/shadow":{"parameters":[name,ver],"post":{"summary":"Answer a copy of every request with a version, for comparison","operationId":"shadow","responses":{"200":resp("The model after the change",S("Model")),**E,**W,"409":err("Refused")}}},
 "/v1/models/{name}/rollback":{"parameters":[name],"post":{"summary":"Production goes back to the version promoted before","operationId":"rollback","responses":{"200":resp("The model after the change",S("Model")),**E,**W,"409":err("Refused")}}},
 "/v1/models/{name}/log/compact":{"parameters":[name],"post":{"summary":"Compact the change log (the file write-ahead log, or the PostgreSQL log replicas share) through what production has folded (after a retrain from the log and its promote)","operationId":"compactLog","requestBody":body(S("CompactRequest"),False),"responses":{"200":resp("What was compacted",S("CompactionReport")),**E,**W,"409":err("A version that may still serve folded less of the log (retire it, or promote past it)")}}},
}
num={"type":"number"}
schemas={
 "Error":{"type":"object","required":["error"],"properties":{"error":{"type":"object","required":["code","message"],"properties":{"code":{"type":"string"},"message":{"type":"string"}}}}},
 "Contribution":{"type":"object","required":["feature","value"],"properties":{"feature":{"type":"string"},"value":num}},
 "Explanation":{"type":"object","properties":{"retrieval_rank":{"type":"integer"},"retrieval_score":num,"lexical_rank":{"type":"integer"},"ranker_contributions":{"type":"array","items":S("Contribution")},"rules":{"type":"array","items":{"type":"string"}}}},
 "ServedItem":{"type":"object","required":["item","score","explanation"],"properties":{"item":{"type":"string"},"title":{"type":"string"},"category":{"type":"string"},"score":num,"ranker_score":num,"explanation":S("Explanation")}},
 "Answer":{"type":"object","required":["path","latency_us","stages_us","items"],"properties":{"model":{"type":"string"},"version":{"type":"string"},"user":{"type":"string"},"query":{"type":"string"},"path":{"type":"array","items":{"type":"string"}},"latency_us":num,"stages_us":{"type":"object","additionalProperties":num},"items":{"type":"array","items":S("ServedItem")}}},
 "AttributeValue":{"oneOf":[{"type":"string"},{"type":"number"},{"type":"array","items":{"type":"string"}},{"type":"null"}]},
 "ItemAttributes":{"type":"object","description":"The schema's item columns by name; a missing column is a missing value","additionalProperties":S("AttributeValue")},
 "Item":{"type":"object","required":["item","categories","numeric","live"],"properties":{"item":{"type":"string"},"title":{"type":"string"},"categories":{"type":"array","items":{"type":"string"}},"created_at":{"type":"integer"},"numeric":{"type":"object","additionalProperties":num},"live":{"type":"boolean"},"attributes":S("ItemAttributes")}},
 "User":{"type":"object","required":["user","trained","interactions","recent"],"properties":{"user":{"type":"string"},"trained":{"type":"boolean"},"interactions":{"type":"integer"},"recent":{"type":"array","items":{"type":"string"}}}},
 "WriteResult":{"type":"object","required":["sequence"],"properties":{"sequence":{"type":"integer","description":"The write's sequence in the write-ahead log"},"item":S("Item"),"accepted":{"type":"integer"}}},
 "Interaction":{"type":"object","required":["user","item"],"properties":{"user":{"type":"string","minLength":1},"item":{"type":"string","minLength":1},"timestamp":{"type":"integer","description":"Unix seconds (default now)"},"weight":num}},
 "RecommendRequest":{"type":"object","required":["user"],"properties":{"user":{"type":"string","minLength":1},"k":{"type":"integer","minimum":1,"maximum":100},"touched":{"type":"array","items":{"type":"string"}},"exclude":{"type":"array","items":{"type":"string"}},"filter":{"type":"array","items":{"type":"string"}},"explain":{"type":"boolean"},"include_seen":{"type":"boolean"},
   "candidates":{"type":"integer","minimum":1,"maximum":10000},"ef":{"type":"integer","minimum":1,"maximum":100000},
   "max_per_category":{"type":"integer","minimum":1,"maximum":10000},
   "pin":{"type":"array","items":{"type":"string"},"description":"Items put first, in this order, when they are candidates"},
   "boost":{"type":"object","additionalProperties":{"type":"number","minimum":0},"description":"Score factors by item id"}}},
 "QueryRequest":{"type":"object","required":["vector"],"properties":{"vector":{"type":"array","items":num},"k":{"type":"integer","minimum":1,"maximum":100},"exclude":{"type":"array","items":{"type":"string"}},"filter":{"type":"array","items":{"type":"string"}}}},
 "PromoteRequest":{"type":"object","properties":{"canary":{"type":"number","minimum":0,"exclusiveMinimum":True,"maximum":1,"exclusiveMaximum":True}}},
 "ModelVersion":{"type":"object","required":["version","state","loaded","created","metrics"],"properties":{"version":{"type":"integer"},"state":{"type":"string","enum":["staging","canary","production","shadow","archived"]},"canary_fraction":num,"loaded":{"type":"boolean"},"created":{"type":"integer"},"metrics":{"type":"object","additionalProperties":num}}},
 "CompactRequest":{"type":"object","properties":{"retire":{"type":"boolean","description":"Archive for good the versions that folded less of the log, instead of refusing"}}},
 "CompactionReport":{"type":"object","required":["through","records_before","records_after","retired"],"properties":{"through":{"type":"integer"},"records_before":{"type":"integer"},"records_after":{"type":"integer"},"retired":{"type":"array","items":{"type":"string"}}}},
 "Model":{"type":"object","required":["name","serving","versions","writes_logged"],"properties":{"name":{"type":"string"},"serving":{"type":"array","items":{"type":"string"}},"versions":{"type":"array","items":S("ModelVersion")},"last_error":{"type":"string"},"writes_logged":{"type":"integer"}}},
}
doc={"openapi":"3.0.3","info":{"title":"Funnel","version":"1.0.0","description":"Funnel's HTTP API: recommendations, similar items, search and vector queries through the whole funnel (retrieval, ranking, re-ranking), live item and interaction writes made durable in a write-ahead log before they are acknowledged, and registry operations that the running server follows at once. Errors are {\"error\": {\"code\", \"message\"}}. Every response carries X-Request-ID (the request's, or a new one)."},
     "paths":paths,"components":{"schemas":schemas,"securitySchemes":{"apiKey":{"type":"http","scheme":"bearer","description":"Write and admin routes, when the server was started with an API key"}}}}
text=json.dumps(doc,indent=2,sort_keys=True)
open(os.path.join(ROOT, 'docs/openapi.json'),'w').write(text+"\n")
sw='''/// The API's OpenAPI 3 document, served at `/openapi.json` (also committed as
/// `docs/openapi.json`; a test keeps the two equal and checks that every documented
/// route is answered).
public enum OpenAPIDocument {
    public static let json = #"""
'''+text+'''
"""#
}
'''
open(os.path.join(ROOT, 'Sources/FunnelServer/OpenAPIDocument.swift'),'w').write(sw)
