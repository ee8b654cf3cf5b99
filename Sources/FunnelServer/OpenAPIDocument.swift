/// The API's OpenAPI 3 document (also committed as `docs/openapi.json`; a test keeps both
/// equal and checks that every documented route is answered).
public enum OpenAPIDocument {
    public static let json = #"""
{}
"""#
}
