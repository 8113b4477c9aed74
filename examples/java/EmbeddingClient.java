// OpenAI-style embeddings client for this service: Java 17, java.net.http only, no build step.
//   java examples/java/EmbeddingClient.java http://127.0.0.1:10002/v1 "你好世界" "hello"
//   java examples/java/EmbeddingClient.java --dry-run "text"    # print the request body only
// Optional env: EMBEDDINGS_API_KEY (sent as "Authorization: Bearer"), EMBEDDINGS_TASK (the
// request's "task", e.g. retrieval.query). Prints the response body as received. Exit codes:
// 0 success, 1 a non-2xx answer (body on stderr), 2 usage error or no answer (connection
// refused, timeout). Arguments are decoded with the JVM's locale: run under a UTF-8 one (e.g.
// LC_ALL=C.UTF-8), or non-ASCII texts are lost before they reach this code.
import java.io.IOException;
import java.net.ConnectException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.net.http.HttpTimeoutException;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Arrays;
import java.util.StringJoiner;

public class EmbeddingClient {
    public static void main(String[] args) throws InterruptedException {
        if (args.length < 2) {
            System.err.println("usage: java EmbeddingClient.java <base-url, e.g. "
                    + "http://127.0.0.1:10002/v1> <text> [<text>...]  (--dry-run as base-url:"
                    + " print the body only)");
            System.exit(2);
        }
        String body = requestBody(Arrays.copyOfRange(args, 1, args.length), env("EMBEDDINGS_TASK"));
        if (args[0].equals("--dry-run")) {
            System.out.println(body);
            return;
        }
        String url = args[0].replaceAll("/+$", "") + "/embeddings";
        HttpResponse<byte[]> response;
        try {
            HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url))
                    .timeout(Duration.ofSeconds(180)) // above the service's 120 s request_timeout_s
                    .header("Content-Type", "application/json; charset=utf-8")
                    .POST(HttpRequest.BodyPublishers.ofString(body, StandardCharsets.UTF_8));
            String key = env("EMBEDDINGS_API_KEY");
            if (key != null) {
                request.header("Authorization", "Bearer " + key);
            }
            // HTTP/1.1: the default HTTP/2 would first try an h2c upgrade on plain http://.
            HttpClient client = HttpClient.newBuilder().version(HttpClient.Version.HTTP_1_1)
                    .connectTimeout(Duration.ofSeconds(10)).build();
            response = client.send(request.build(), HttpResponse.BodyHandlers.ofByteArray());
        } catch (IOException | IllegalArgumentException e) { // IllegalArgument: a malformed URL
            System.err.println(e instanceof ConnectException // JDK 17 gives it no message
                    ? "cannot connect to " + url + ": connection refused or host unreachable"
                    : e instanceof HttpTimeoutException ? "no answer from " + url + ": " + reason(e)
                    : "request to " + url + " failed: " + reason(e));
            System.exit(2);
            return;
        }
        // Raw bytes: the body is UTF-8 JSON, whatever the console's default charset is.
        boolean ok = response.statusCode() / 100 == 2;
        (ok ? System.out : System.err).writeBytes(response.body());
        (ok ? System.out : System.err).println();
        if (!ok) {
            System.err.println("HTTP " + response.statusCode() + " from " + url);
            System.exit(1);
        }
    }

    static String requestBody(String[] texts, String task) {
        StringJoiner input = new StringJoiner(",", "[", "]");
        for (String text : texts) {
            input.add(quote(text));
        }
        return "{\"model\":\"jina-embeddings-v3\",\"input\":" + input
                + ",\"encoding_format\":\"float\""
                + (task == null ? "" : ",\"task\":" + quote(task)) + "}";
    }

    /** A JSON string literal (RFC 8259); non-ASCII stays raw, to be sent as UTF-8. */
    static String quote(String s) {
        StringBuilder out = new StringBuilder(s.length() + 2).append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    // Other controls and lone surrogates (UTF-8 would send '?') as \\uXXXX.
                    boolean paired = Character.isHighSurrogate(c) && i + 1 < s.length()
                            && Character.isLowSurrogate(s.charAt(i + 1));
                    if (paired) {
                        out.append(c).append(s.charAt(++i));
                    } else if (c < 0x20 || Character.isSurrogate(c)) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        return out.append('"').toString();
    }

    static String env(String name) {
        String value = System.getenv(name);
        return value == null || value.isBlank() ? null : value.strip();
    }

    static String reason(Exception e) {
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t.getMessage() != null) {
                return t.getMessage();
            }
        }
        return e.getClass().getSimpleName();
    }
}
