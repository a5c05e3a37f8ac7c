// The JVM app of tests/node: a plain HTTP server (the JDK's own com.sun.net.httpserver) that
// reports what the JVM it runs in really got, on port 8080 (or PORT).
//
//   GET /health, /ready  200 "ok" (once started)
//   GET /memory          JSON: Runtime.maxMemory() and the MaxHeapSize, MaxRAMPercentage,
//                        MinRAMPercentage flags as HotSpot set them
//   GET /limits          the text of /proc/self/limits
//   GET /ls?dir=PATH     the names of the files in PATH, one a line
//   GET /oom             allocates until OutOfMemoryError (the JVM's flags decide what follows)
//   GET /native          allocates native memory (outside the heap, touched) until the kernel
//                        kills the JVM at the container's memory limit
//   GET /options         JSON: the JAVA_TOOL_OPTIONS the process has and the image.env property
//
// SLOW_START_SECONDS=N: sleeps N seconds before it listens (a slow-starting app).
// TERM_EXIT_CODE=N: on SIGTERM (a shutdown), says so and exits with code N.
import com.sun.management.HotSpotDiagnosticMXBean;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.net.InetSocketAddress;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

public class App {
    static final List<long[]> HOARD = new ArrayList<>();

    public static void main(String[] args) throws Exception {
        String slow = System.getenv("SLOW_START_SECONDS");
        if (slow != null && !slow.isEmpty()) {
            System.out.println("slow start: sleeping " + slow + " s");
            Thread.sleep(Long.parseLong(slow) * 1000L);
        }
        String term = System.getenv("TERM_EXIT_CODE");
        if (term != null && !term.isEmpty()) {
            int code = Integer.parseInt(term);
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                System.out.println("shutting down: exit code " + code);
                Runtime.getRuntime().halt(code);
            }));
        }
        String port = System.getenv().getOrDefault("PORT", "8080");
        HttpServer server = HttpServer.create(new InetSocketAddress(Integer.parseInt(port)), 16);
        server.createContext("/health", ex -> reply(ex, 200, "ok\n"));
        server.createContext("/ready", ex -> reply(ex, 200, "ok\n"));
        server.createContext("/memory", ex -> reply(ex, 200, memory()));
        server.createContext("/limits", ex -> reply(ex, 200,
                new String(Files.readAllBytes(Paths.get("/proc/self/limits")), StandardCharsets.UTF_8)));
        server.createContext("/ls", ex -> {
            String query = ex.getRequestURI().getQuery();
            String dir = query != null && query.startsWith("dir=") ? query.substring(4) : "/";
            String[] names = new File(dir).list();
            if (names == null) {
                reply(ex, 404, "no directory " + dir + "\n");
                return;
            }
            Arrays.sort(names);
            StringBuilder out = new StringBuilder();
            for (String name : names) {
                out.append(name).append('\n');
            }
            reply(ex, 200, out.toString());
        });
        server.createContext("/options", ex -> reply(ex, 200, "{\"JAVA_TOOL_OPTIONS\":" + quote(System.getenv("JAVA_TOOL_OPTIONS"))
                + ",\"image.env\":" + quote(System.getProperty("image.env")) + "}\n"));
        server.createContext("/oom", ex -> {
            System.out.println("allocating until OutOfMemoryError");
            while (true) {
                HOARD.add(new long[1 << 17]);
            }
        });
        server.createContext("/native", ex -> {
            System.out.println("allocating native memory until the kernel kills the JVM");
            try {
                java.lang.reflect.Field field = sun.misc.Unsafe.class.getDeclaredField("theUnsafe");
                field.setAccessible(true);
                sun.misc.Unsafe unsafe = (sun.misc.Unsafe) field.get(null);
                // 8 MiB every 100 ms, each byte written so that it is resident: slow enough
                // for the agent to sample the JVM on the way.
                while (true) {
                    long chunk = 8L << 20;
                    long address = unsafe.allocateMemory(chunk);
                    unsafe.setMemory(address, chunk, (byte) 1);
                    Thread.sleep(100);
                }
            } catch (ReflectiveOperationException | InterruptedException e) {
                reply(ex, 500, e + "\n");
            }
        });
        server.start();
        System.out.println("listening on " + port);
    }

    static String memory() {
        HotSpotDiagnosticMXBean hotspot = ManagementFactory.getPlatformMXBean(HotSpotDiagnosticMXBean.class);
        return "{\"maxMemory\":" + Runtime.getRuntime().maxMemory()
                + ",\"MaxHeapSize\":" + hotspot.getVMOption("MaxHeapSize").getValue()
                + ",\"MaxRAMPercentage\":" + hotspot.getVMOption("MaxRAMPercentage").getValue()
                + ",\"MinRAMPercentage\":" + hotspot.getVMOption("MinRAMPercentage").getValue()
                + ",\"availableProcessors\":" + Runtime.getRuntime().availableProcessors() + "}\n";
    }

    static String quote(String s) {
        if (s == null) {
            return "null";
        }
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
    }

    static void reply(HttpExchange ex, int status, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        ex.sendResponseHeaders(status, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }
}
