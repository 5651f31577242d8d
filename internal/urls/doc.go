// Package urls serves function URLs: HTTP requests to
// http://<url-id>.lambda-url.<region>.localhost:<port>/ on a listener of
// their own, routed by Host to the function (or alias) whose URL it is.
//
// A request is authorized as Lambda does it (AuthType NONE: the function's
// resource policy must grant lambda:InvokeFunctionUrl to "*" with
// lambda:FunctionUrlAuthType NONE; AWS_IAM: a SigV4 signature for service
// lambda, from the owner account's principals allowed
// lambda:InvokeFunctionUrl or from a principal the resource policy grants
// it), answered from the URL's CORS configuration when it is a preflight,
// turned into the payload format 2.0 event, invoked, and the function's
// answer mapped back to HTTP (statusCode, headers, cookies, body,
// isBase64Encoded; anything else is a 200 JSON body). With InvokeMode
// RESPONSE_STREAM the response is streamed as the function writes it
// (chunked), after the application/vnd.awslambda.http-integration-response
// prelude when the function sends one.
package urls
