/// The API's OpenAPI 3 document, served at `/openapi.json` (also committed as
/// `docs/openapi.json`; a test keeps the two equal and checks that every documented
/// route is answered).
public enum OpenAPIDocument {
    public static let json = #"""
{
  "components": {
    "schemas": {
      "Answer": {
        "properties": {
          "items": {
            "items": {
              "$ref": "#/components/schemas/ServedItem"
            },
            "type": "array"
          },
          "latency_us": {
            "type": "number"
          },
          "model": {
            "type": "string"
          },
          "path": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "query": {
            "type": "string"
          },
          "stages_us": {
            "additionalProperties": {
              "type": "number"
            },
            "type": "object"
          },
          "user": {
            "type": "string"
          },
          "version": {
            "type": "string"
          }
        },
        "required": [
          "path",
          "latency_us",
          "stages_us",
          "items"
        ],
        "type": "object"
      },
      "AttributeValue": {
        "oneOf": [
          {
            "type": "string"
          },
          {
            "type": "number"
          },
          {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          {
            "type": "null"
          }
        ]
      },
      "CompactRequest": {
        "properties": {
          "retire": {
            "description": "Archive for good the versions that folded less of the log, instead of refusing",
            "type": "boolean"
          }
        },
        "type": "object"
      },
      "CompactionReport": {
        "properties": {
          "records_after": {
            "type": "integer"
          },
          "records_before": {
            "type": "integer"
          },
          "retired": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "through": {
            "type": "integer"
          }
        },
        "required": [
          "through",
          "records_before",
          "records_after",
          "retired"
        ],
        "type": "object"
      },
      "Contribution": {
        "properties": {
          "feature": {
            "type": "string"
          },
          "value": {
            "type": "number"
          }
        },
        "required": [
          "feature",
          "value"
        ],
        "type": "object"
      },
      "Error": {
        "properties": {
          "error": {
            "properties": {
              "code": {
                "type": "string"
              },
              "message": {
                "type": "string"
              }
            },
            "required": [
              "code",
              "message"
            ],
            "type": "object"
          }
        },
        "required": [
          "error"
        ],
        "type": "object"
      },
      "Explanation": {
        "properties": {
          "lexical_rank": {
            "type": "integer"
          },
          "ranker_contributions": {
            "items": {
              "$ref": "#/components/schemas/Contribution"
            },
            "type": "array"
          },
          "retrieval_rank": {
            "type": "integer"
          },
          "retrieval_score": {
            "type": "number"
          },
          "rules": {
            "items": {
              "type": "string"
            },
            "type": "array"
          }
        },
        "type": "object"
      },
      "Interaction": {
        "properties": {
          "item": {
            "minLength": 1,
            "type": "string"
          },
          "timestamp": {
            "description": "Unix seconds (default now)",
            "type": "integer"
          },
          "user": {
            "minLength": 1,
            "type": "string"
          },
          "weight": {
            "type": "number"
          }
        },
        "required": [
          "user",
          "item"
        ],
        "type": "object"
      },
      "Item": {
        "properties": {
          "attributes": {
            "$ref": "#/components/schemas/ItemAttributes"
          },
          "categories": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "created_at": {
            "type": "integer"
          },
          "item": {
            "type": "string"
          },
          "live": {
            "type": "boolean"
          },
          "numeric": {
            "additionalProperties": {
              "type": "number"
            },
            "type": "object"
          },
          "title": {
            "type": "string"
          }
        },
        "required": [
          "item",
          "categories",
          "numeric",
          "live"
        ],
        "type": "object"
      },
      "ItemAttributes": {
        "additionalProperties": {
          "$ref": "#/components/schemas/AttributeValue"
        },
        "description": "The schema's item columns by name; a missing column is a missing value",
        "type": "object"
      },
      "Model": {
        "properties": {
          "last_error": {
            "type": "string"
          },
          "name": {
            "type": "string"
          },
          "serving": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "versions": {
            "items": {
              "$ref": "#/components/schemas/ModelVersion"
            },
            "type": "array"
          },
          "writes_logged": {
            "type": "integer"
          }
        },
        "required": [
          "name",
          "serving",
          "versions",
          "writes_logged"
        ],
        "type": "object"
      },
      "ModelVersion": {
        "properties": {
          "canary_fraction": {
            "type": "number"
          },
          "created": {
            "type": "integer"
          },
          "loaded": {
            "type": "boolean"
          },
          "metrics": {
            "additionalProperties": {
              "type": "number"
            },
            "type": "object"
          },
          "state": {
            "enum": [
              "staging",
              "canary",
              "production",
              "shadow",
              "archived"
            ],
            "type": "string"
          },
          "version": {
            "type": "integer"
          }
        },
        "required": [
          "version",
          "state",
          "loaded",
          "created",
          "metrics"
        ],
        "type": "object"
      },
      "PromoteRequest": {
        "properties": {
          "canary": {
            "exclusiveMaximum": true,
            "exclusiveMinimum": true,
            "maximum": 1,
            "minimum": 0,
            "type": "number"
          }
        },
        "type": "object"
      },
      "QueryRequest": {
        "properties": {
          "exclude": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "filter": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "k": {
            "maximum": 100,
            "minimum": 1,
            "type": "integer"
          },
          "vector": {
            "items": {
              "type": "number"
            },
            "type": "array"
          }
        },
        "required": [
          "vector"
        ],
        "type": "object"
      },
      "RecommendRequest": {
        "properties": {
          "boost": {
            "additionalProperties": {
              "minimum": 0,
              "type": "number"
            },
            "description": "Score factors by item id",
            "type": "object"
          },
          "candidates": {
            "maximum": 10000,
            "minimum": 1,
            "type": "integer"
          },
          "ef": {
            "maximum": 100000,
            "minimum": 1,
            "type": "integer"
          },
          "exclude": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "explain": {
            "type": "boolean"
          },
          "filter": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "include_seen": {
            "type": "boolean"
          },
          "k": {
            "maximum": 100,
            "minimum": 1,
            "type": "integer"
          },
          "max_per_category": {
            "maximum": 10000,
            "minimum": 1,
            "type": "integer"
          },
          "pin": {
            "description": "Items put first, in this order, when they are candidates",
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "touched": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "user": {
            "minLength": 1,
            "type": "string"
          }
        },
        "required": [
          "user"
        ],
        "type": "object"
      },
      "ServedItem": {
        "properties": {
          "category": {
            "type": "string"
          },
          "explanation": {
            "$ref": "#/components/schemas/Explanation"
          },
          "item": {
            "type": "string"
          },
          "ranker_score": {
            "type": "number"
          },
          "score": {
            "type": "number"
          },
          "title": {
            "type": "string"
          }
        },
        "required": [
          "item",
          "score",
          "explanation"
        ],
        "type": "object"
      },
      "User": {
        "properties": {
          "interactions": {
            "type": "integer"
          },
          "recent": {
            "items": {
              "type": "string"
            },
            "type": "array"
          },
          "trained": {
            "type": "boolean"
          },
          "user": {
            "type": "string"
          }
        },
        "required": [
          "user",
          "trained",
          "interactions",
          "recent"
        ],
        "type": "object"
      },
      "WriteResult": {
        "properties": {
          "accepted": {
            "type": "integer"
          },
          "item": {
            "$ref": "#/components/schemas/Item"
          },
          "sequence": {
            "description": "The write's sequence in the write-ahead log",
            "type": "integer"
          }
        },
        "required": [
          "sequence"
        ],
        "type": "object"
      }
    },
    "securitySchemes": {
      "apiKey": {
        "description": "Write and admin routes, when the server was started with an API key",
        "scheme": "bearer",
        "type": "http"
      }
    }
  },
  "info": {
    "description": "Funnel's HTTP API: recommendations, similar items, search and vector queries through the whole funnel (retrieval, ranking, re-ranking), live item and interaction writes made durable in a write-ahead log before they are acknowledged, and registry operations that the running server follows at once. Errors are {\"error\": {\"code\", \"message\"}}. Every response carries X-Request-ID (the request's, or a new one).",
    "title": "Funnel",
    "version": "1.0.0"
  },
  "openapi": "3.0.3",
  "paths": {
    "/health": {
      "get": {
        "operationId": "health",
        "responses": {
          "200": {
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            },
            "description": "ok and the versions"
          }
        },
        "summary": "Plain-text health with the served versions"
      }
    },
    "/livez": {
      "get": {
        "operationId": "livez",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            },
            "description": "Alive"
          }
        },
        "summary": "The process is up"
      }
    },
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "responses": {
          "200": {
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            },
            "description": "Prometheus text"
          }
        },
        "summary": "Prometheus metrics: HTTP status and latency, stage latencies, fallbacks"
      }
    },
    "/openapi.json": {
      "get": {
        "operationId": "openapi",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            },
            "description": "The OpenAPI document"
          }
        },
        "summary": "This document"
      }
    },
    "/readyz": {
      "get": {
        "operationId": "readyz",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "properties": {
                    "model": {
                      "type": "string"
                    },
                    "status": {
                      "type": "string"
                    },
                    "versions": {
                      "items": {
                        "type": "string"
                      },
                      "type": "array"
                    }
                  },
                  "type": "object"
                }
              }
            },
            "description": "Ready"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "No validated model is loaded"
          }
        },
        "summary": "Ready only when a validated model is loaded"
      }
    },
    "/recommend": {
      "get": {
        "operationId": "legacyRecommend",
        "parameters": [
          {
            "description": "The user id",
            "in": "query",
            "name": "user",
            "required": true,
            "schema": {
              "minLength": 1,
              "type": "string"
            }
          },
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "Comma-separated items a new user touched",
            "in": "query",
            "name": "touched",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "description": "Comma-separated items never to return",
            "in": "query",
            "name": "exclude",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "description": "Attribute filter clauses: category=A|B, category!=C, NAME>=X, NAME<=X, created>=DATE",
            "explode": true,
            "in": "query",
            "name": "filter",
            "required": false,
            "schema": {
              "items": {
                "type": "string"
              },
              "type": "array"
            },
            "style": "form"
          },
          {
            "description": "Include each item's explanation (default true)",
            "in": "query",
            "name": "explain",
            "required": false,
            "schema": {
              "type": "boolean"
            }
          },
          {
            "description": "Allow items the user has interacted with",
            "in": "query",
            "name": "include_seen",
            "required": false,
            "schema": {
              "type": "boolean"
            }
          },
          {
            "description": "Candidates retrieved (default: the bundle's)",
            "in": "query",
            "name": "candidates",
            "required": false,
            "schema": {
              "maximum": 10000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "HNSW beam width (default: the bundle's)",
            "in": "query",
            "name": "ef",
            "required": false,
            "schema": {
              "maximum": 100000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "At most this many items of one category (default: the bundle's)",
            "in": "query",
            "name": "max_per_category",
            "required": false,
            "schema": {
              "maximum": 10000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "Pin the request to a loaded version (v3)",
            "in": "query",
            "name": "version",
            "required": false,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Recommendations from the production model (the route of before /v1)"
      }
    },
    "/search": {
      "get": {
        "operationId": "legacySearch",
        "parameters": [
          {
            "description": "The query text",
            "in": "query",
            "name": "q",
            "required": true,
            "schema": {
              "minLength": 1,
              "type": "string"
            }
          },
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "lexical: BM25 only; hybrid: BM25 fused with embedding neighbours",
            "in": "query",
            "name": "mode",
            "required": false,
            "schema": {
              "enum": [
                "lexical",
                "hybrid"
              ],
              "type": "string"
            }
          },
          {
            "description": "Pin the request to a loaded version (v3)",
            "in": "query",
            "name": "version",
            "required": false,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Text search (the route of before /v1)"
      }
    },
    "/similar": {
      "get": {
        "operationId": "legacySimilar",
        "parameters": [
          {
            "description": "The item id",
            "in": "query",
            "name": "item",
            "required": true,
            "schema": {
              "minLength": 1,
              "type": "string"
            }
          },
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "Pin the request to a loaded version (v3)",
            "in": "query",
            "name": "version",
            "required": false,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Items similar to an item (the route of before /v1)"
      }
    },
    "/v1/models": {
      "get": {
        "operationId": "listModels",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "properties": {
                    "models": {
                      "items": {
                        "$ref": "#/components/schemas/Model"
                      },
                      "type": "array"
                    }
                  },
                  "required": [
                    "models"
                  ],
                  "type": "object"
                }
              }
            },
            "description": "Models"
          }
        },
        "summary": "The served model, its versions and their states"
      }
    },
    "/v1/models/{name}": {
      "get": {
        "operationId": "getModel",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Model"
                }
              }
            },
            "description": "The model"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "One model: versions, states, what is loaded, the last refused version"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ]
    },
    "/v1/models/{name}/interactions": {
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "appendInteractions",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "items": {
                  "$ref": "#/components/schemas/Interaction"
                },
                "minItems": 1,
                "type": "array"
              }
            }
          },
          "required": true
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/WriteResult"
                }
              }
            },
            "description": "Durable and applied"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "413": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The body is over the size limit"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Append interactions: histories and ranking statistics move at once"
      }
    },
    "/v1/models/{name}/items/{item}": {
      "delete": {
        "operationId": "deleteItem",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/WriteResult"
                }
              }
            },
            "description": "Durable and applied"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Delete an item: no answer returns it again"
      },
      "get": {
        "operationId": "getItem",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Item"
                }
              }
            },
            "description": "The item"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "An item as served now"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        },
        {
          "description": "An item id",
          "in": "path",
          "name": "item",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ],
      "put": {
        "operationId": "upsertItem",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/ItemAttributes"
              }
            }
          },
          "required": true
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/WriteResult"
                }
              }
            },
            "description": "Durable and applied"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "413": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The body is over the size limit"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Add or change an item: embedded from its attributes, in the index for the next request"
      }
    },
    "/v1/models/{name}/items/{item}/similar": {
      "get": {
        "operationId": "similar",
        "parameters": [
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "Attribute filter clauses: category=A|B, category!=C, NAME>=X, NAME<=X, created>=DATE",
            "explode": true,
            "in": "query",
            "name": "filter",
            "required": false,
            "schema": {
              "items": {
                "type": "string"
              },
              "type": "array"
            },
            "style": "form"
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Items nearest to an item, re-ranked"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        },
        {
          "description": "An item id",
          "in": "path",
          "name": "item",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ]
    },
    "/v1/models/{name}/log/compact": {
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "compactLog",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/CompactRequest"
              }
            }
          },
          "required": false
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/CompactionReport"
                }
              }
            },
            "description": "What was compacted"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "409": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A version that may still serve folded less of the log (retire it, or promote past it)"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Compact the change log (the file write-ahead log, or the PostgreSQL log replicas share) through what production has folded (after a retrain from the log and its promote)"
      }
    },
    "/v1/models/{name}/query": {
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "query",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/QueryRequest"
              }
            }
          },
          "required": true
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "413": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The body is over the size limit"
          }
        },
        "summary": "Top-k for a query vector in the item-embedding space"
      }
    },
    "/v1/models/{name}/recommend": {
      "get": {
        "operationId": "recommend",
        "parameters": [
          {
            "description": "The user id",
            "in": "query",
            "name": "user",
            "required": true,
            "schema": {
              "minLength": 1,
              "type": "string"
            }
          },
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "Comma-separated items a new user touched",
            "in": "query",
            "name": "touched",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "description": "Comma-separated items never to return",
            "in": "query",
            "name": "exclude",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "description": "Attribute filter clauses: category=A|B, category!=C, NAME>=X, NAME<=X, created>=DATE",
            "explode": true,
            "in": "query",
            "name": "filter",
            "required": false,
            "schema": {
              "items": {
                "type": "string"
              },
              "type": "array"
            },
            "style": "form"
          },
          {
            "description": "Include each item's explanation (default true)",
            "in": "query",
            "name": "explain",
            "required": false,
            "schema": {
              "type": "boolean"
            }
          },
          {
            "description": "Allow items the user has interacted with",
            "in": "query",
            "name": "include_seen",
            "required": false,
            "schema": {
              "type": "boolean"
            }
          },
          {
            "description": "Candidates retrieved (default: the bundle's)",
            "in": "query",
            "name": "candidates",
            "required": false,
            "schema": {
              "maximum": 10000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "HNSW beam width (default: the bundle's)",
            "in": "query",
            "name": "ef",
            "required": false,
            "schema": {
              "maximum": 100000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "At most this many items of one category (default: the bundle's)",
            "in": "query",
            "name": "max_per_category",
            "required": false,
            "schema": {
              "maximum": 10000,
              "minimum": 1,
              "type": "integer"
            }
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Top-k for a known user, or a new user from touched items"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "recommendPost",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/RecommendRequest"
              }
            }
          },
          "required": true
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Top-k with the rich request body"
      }
    },
    "/v1/models/{name}/rollback": {
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "rollback",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Model"
                }
              }
            },
            "description": "The model after the change"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "409": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Refused"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Production goes back to the version promoted before"
      }
    },
    "/v1/models/{name}/search": {
      "get": {
        "operationId": "search",
        "parameters": [
          {
            "description": "The query text",
            "in": "query",
            "name": "q",
            "required": true,
            "schema": {
              "minLength": 1,
              "type": "string"
            }
          },
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "lexical or hybrid (default)",
            "in": "query",
            "name": "mode",
            "required": false,
            "schema": {
              "enum": [
                "lexical",
                "hybrid"
              ],
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Text search over titles, text and categories"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ]
    },
    "/v1/models/{name}/users/{user}": {
      "get": {
        "operationId": "getUser",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/User"
                }
              }
            },
            "description": "The user"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "A user as served now: trained or not, their history's length and newest items"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        },
        {
          "description": "A user id",
          "in": "path",
          "name": "user",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        }
      ]
    },
    "/v1/models/{name}/versions/{version}/promote": {
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        },
        {
          "description": "A version: 3 or v3",
          "in": "path",
          "name": "version",
          "required": true,
          "schema": {
            "pattern": "^v?[1-9][0-9]{0,8}$",
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "promote",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/PromoteRequest"
              }
            }
          },
          "required": false
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Model"
                }
              }
            },
            "description": "The model after the change"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "409": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Refused: the transition is invalid, the version failed to load, or this server serves a folder"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Make a version production, or a canary with {\"canary\": 0.1}"
      }
    },
    "/v1/models/{name}/versions/{version}/recommend": {
      "get": {
        "operationId": "recommendPinned",
        "parameters": [
          {
            "description": "The user id",
            "in": "query",
            "name": "user",
            "required": true,
            "schema": {
              "minLength": 1,
              "type": "string"
            }
          },
          {
            "description": "How many items (at most the server's --max-k)",
            "in": "query",
            "name": "k",
            "required": false,
            "schema": {
              "default": 10,
              "maximum": 100,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "Comma-separated items a new user touched",
            "in": "query",
            "name": "touched",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "description": "Comma-separated items never to return",
            "in": "query",
            "name": "exclude",
            "required": false,
            "schema": {
              "type": "string"
            }
          },
          {
            "description": "Attribute filter clauses: category=A|B, category!=C, NAME>=X, NAME<=X, created>=DATE",
            "explode": true,
            "in": "query",
            "name": "filter",
            "required": false,
            "schema": {
              "items": {
                "type": "string"
              },
              "type": "array"
            },
            "style": "form"
          },
          {
            "description": "Include each item's explanation (default true)",
            "in": "query",
            "name": "explain",
            "required": false,
            "schema": {
              "type": "boolean"
            }
          },
          {
            "description": "Allow items the user has interacted with",
            "in": "query",
            "name": "include_seen",
            "required": false,
            "schema": {
              "type": "boolean"
            }
          },
          {
            "description": "Candidates retrieved (default: the bundle's)",
            "in": "query",
            "name": "candidates",
            "required": false,
            "schema": {
              "maximum": 10000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "HNSW beam width (default: the bundle's)",
            "in": "query",
            "name": "ef",
            "required": false,
            "schema": {
              "maximum": 100000,
              "minimum": 1,
              "type": "integer"
            }
          },
          {
            "description": "At most this many items of one category (default: the bundle's)",
            "in": "query",
            "name": "max_per_category",
            "required": false,
            "schema": {
              "maximum": 10000,
              "minimum": 1,
              "type": "integer"
            }
          }
        ],
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Top-k from a pinned version"
      },
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        },
        {
          "description": "A version: 3 or v3",
          "in": "path",
          "name": "version",
          "required": true,
          "schema": {
            "pattern": "^v?[1-9][0-9]{0,8}$",
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "recommendPinnedPost",
        "requestBody": {
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/RecommendRequest"
              }
            }
          },
          "required": true
        },
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Answer"
                }
              }
            },
            "description": "The ranked items, the model and version that answered, the path taken and per-stage times"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          }
        },
        "summary": "Top-k from a pinned version, rich body"
      }
    },
    "/v1/models/{name}/versions/{version}/shadow": {
      "parameters": [
        {
          "description": "The served model's name",
          "in": "path",
          "name": "name",
          "required": true,
          "schema": {
            "minLength": 1,
            "type": "string"
          }
        },
        {
          "description": "A version: 3 or v3",
          "in": "path",
          "name": "version",
          "required": true,
          "schema": {
            "pattern": "^v?[1-9][0-9]{0,8}$",
            "type": "string"
          }
        }
      ],
      "post": {
        "operationId": "shadow",
        "responses": {
          "200": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Model"
                }
              }
            },
            "description": "The model after the change"
          },
          "400": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "A malformed parameter or body"
          },
          "401": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "The route needs the API key"
          },
          "404": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Unknown model, version, user, item or route"
          },
          "409": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Refused"
          },
          "503": {
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            },
            "description": "Not ready"
          }
        },
        "summary": "Answer a copy of every request with a version, for comparison"
      }
    }
  }
}
"""#
}
