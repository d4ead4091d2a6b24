// cuda-sim runtime: runs a kernel launch on the host as a GPU would schedule it.
//
// Blocks are handed out to a few OS threads (the caller plus BEIT_SIM_THREADS − 1 helpers,
// default one per core). An OS thread runs a block as one fiber per CUDA thread, all on its
// own small stack: a fiber runs until it reaches a barrier (`__syncthreads`, or the warp
// barrier inside a shuffle) or returns, then the next fiber runs. A barrier releases when
// every thread it names has arrived, so reductions and shared-memory hand-offs behave as on
// a GPU, and the visiting order flips every round (lowest thread first, then highest
// first), so a missing barrier shows up as a wrong result. Threads that can never meet
// (a `__syncthreads` some threads skip, a shuffle in a partial warp) are reported with the
// kernel, block and what each thread waits on, instead of hanging.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuda_sim.h"

__thread dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace beit_sim {
namespace {

// ---- fibers: a saved stack pointer and a switch between two of them ----
#if defined(__x86_64__)
struct Context {
    void* sp = nullptr;
};
}  // namespace
}  // namespace beit_sim

// swap(save, load): push the callee-saved registers and the SSE/x87 control words, store
// the stack pointer in *save, load `load`, pop and return into the other fiber. A fresh
// fiber's stack returns into beit_sim_entry, which calls beit_sim_fiber_main.
extern "C" void beit_sim_swap(void** save, void* load);
extern "C" void beit_sim_entry();
asm(R"(
    .text
    .p2align 4
    .globl beit_sim_swap
    .hidden beit_sim_swap
    .type beit_sim_swap, @function
beit_sim_swap:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size beit_sim_swap, .-beit_sim_swap

    .p2align 4
    .globl beit_sim_entry
    .hidden beit_sim_entry
    .type beit_sim_entry, @function
beit_sim_entry:
    call beit_sim_fiber_main
    ud2
    .size beit_sim_entry, .-beit_sim_entry
)");

namespace beit_sim {
namespace {
// A fresh context whose first switch-in enters beit_sim_fiber_main on `stack`.
void ctx_init(Context& c, char* stack, size_t size) {
    uintptr_t top = ((uintptr_t)(stack + size)) & ~(uintptr_t)15;
    void** sp = (void**)top - 8;
    uint32_t mxcsr = __builtin_ia32_stmxcsr();
    uint16_t fcw;
    asm volatile("fnstcw %0" : "=m"(fcw));
    memset(sp, 0, 8 * sizeof(void*));
    memcpy(sp, &mxcsr, 4);
    memcpy((char*)sp + 4, &fcw, 2);
    sp[7] = (void*)&beit_sim_entry;
    c.sp = sp;
}
inline void ctx_swap(Context& save, Context& load) { beit_sim_swap(&save.sp, load.sp); }
#else
}  // namespace
}  // namespace beit_sim
#include <ucontext.h>
extern "C" void beit_sim_fiber_main();
namespace beit_sim {
namespace {
struct Context {
    ucontext_t uc;
};
void ctx_init(Context& c, char* stack, size_t size) {
    getcontext(&c.uc);
    c.uc.uc_stack.ss_sp = stack;
    c.uc.uc_stack.ss_size = size;
    c.uc.uc_link = nullptr;
    makecontext(&c.uc, beit_sim_fiber_main, 0);
}
inline void ctx_swap(Context& save, Context& load) { swapcontext(&save.uc, &load.uc); }
#endif

constexpr size_t kStack = 64 << 10;  // per fiber; kernels keep a few hundred bytes of locals
constexpr size_t kGuard = 4 << 10;   // an unmapped page below each stack: overflow faults
constexpr unsigned kMaxThreads = 1024;

[[noreturn]] void die(const char* what) {
    fprintf(stderr, "cuda-sim: %s\n", what);
    abort();
}

struct Barrier {
    unsigned need = 0, count = 0, gen = 0;
};

struct Fiber {
    Context ctx;
    dim3 tid;
    unsigned linear;
    enum State { FRESH, RUNNING, WAITING, DONE, FAILED } state;
    Barrier* on;   // what a WAITING fiber waits for
    unsigned gen;  // ... and the generation it waits to pass
    unsigned shuffles;
};

// One launch, shared by every OS thread that runs its blocks.
struct Launch {
    const Entry* kernel;
    dim3 grid, block;
    void* const* args;
    uint64_t total;
    std::atomic<uint64_t> next{0};
    std::atomic<bool> failed{false};
    std::mutex mu;
    std::string error;
    void fail(const std::string& msg) {
        std::lock_guard<std::mutex> g(mu);
        if (error.empty()) error = msg;
        failed = true;
    }
};

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, f);
    vsnprintf(buf, sizeof buf, f, ap);
    va_end(ap);
    return buf;
}

// One OS thread's block runner: its fibers, their stacks, the block's barriers and the
// warps' shuffle slots (two per lane, used alternately, so one barrier per shuffle).
struct Worker {
    std::vector<Fiber> fibers;
    char* stacks = nullptr;
    size_t nstacks = 0;
    Barrier block_barrier;
    std::vector<Barrier> warp_barriers;
    std::vector<uint64_t> slots;
    Context sched;
    Fiber* current = nullptr;
    Launch* launch = nullptr;
    std::string error;  // set by a fiber that hit a misuse; ends the block

    char* stack(unsigned i) {
        if (i >= nstacks) {
            if (stacks) munmap(stacks, nstacks * (kStack + kGuard));
            nstacks = kMaxThreads;
            void* p = mmap(nullptr, nstacks * (kStack + kGuard), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p == MAP_FAILED) die("cannot map fiber stacks");
            stacks = (char*)p;
            for (size_t s = 0; s < nstacks; ++s) mprotect(stacks + s * (kStack + kGuard), kGuard, PROT_NONE);
        }
        return stacks + i * (kStack + kGuard) + kGuard;
    }

    // Wait at `b` until all of its threads arrive; the last one goes on at once.
    void wait(Barrier& b) {
        Fiber* f = current;
        if (++b.count == b.need) {
            b.count = 0;
            ++b.gen;
            return;
        }
        f->state = Fiber::WAITING;
        f->on = &b;
        f->gen = b.gen;
        ctx_swap(f->ctx, sched);
    }

    // End the block with `msg` (from inside a fiber); the fiber never runs again.
    [[noreturn]] void misuse(const std::string& msg) {
        error = msg;
        current->state = Fiber::FAILED;
        ctx_swap(current->ctx, sched);
        die("a failed fiber was resumed");
    }

    std::string where() const {
        return fmt("kernel `%s` block (%u, %u, %u) thread (%u, %u, %u)", launch->kernel->name, blockIdx.x, blockIdx.y,
                   blockIdx.z, current->tid.x, current->tid.y, current->tid.z);
    }

    // Run block number `b` (x fastest) of the launch; false with `error` set on a misuse.
    bool run_block(uint64_t b) {
        const dim3 g = launch->grid, d = launch->block;
        blockIdx = dim3{(unsigned)(b % g.x), (unsigned)(b / g.x % g.y), (unsigned)(b / ((uint64_t)g.x * g.y))};
        const unsigned n = d.x * d.y * d.z, warps = (n + 31) / 32;
        fibers.resize(n);
        warp_barriers.assign(warps, Barrier{});
        slots.resize((size_t)warps * 64);
        block_barrier = Barrier{n, 0, 0};
        for (unsigned w = 0; w < warps; ++w) warp_barriers[w].need = (w + 1) * 32 <= n ? 32 : n - w * 32;
        for (unsigned i = 0; i < n; ++i) {
            Fiber& f = fibers[i];
            f.tid = dim3{i % d.x, i / d.x % d.y, i / (d.x * d.y)};
            f.linear = i;
            f.state = Fiber::FRESH;
            f.shuffles = 0;
        }
        unsigned done = 0;
        for (unsigned round = 0; done < n; ++round) {
            bool progress = false;
            for (unsigned k = 0; k < n; ++k) {
                Fiber& f = fibers[round & 1 ? n - 1 - k : k];
                if (f.state == Fiber::DONE || (f.state == Fiber::WAITING && f.on->gen == f.gen)) continue;
                if (f.state == Fiber::FRESH) ctx_init(f.ctx, stack(f.linear), kStack);
                f.state = Fiber::RUNNING;
                current = &f;
                threadIdx = f.tid;
                ctx_swap(sched, f.ctx);
                current = nullptr;
                if (f.state == Fiber::FAILED) return false;
                done += f.state == Fiber::DONE;
                progress = true;
            }
            if (!progress) {
                error = deadlock();
                return false;
            }
        }
        return true;
    }

    // Why no thread of the block can go on.
    std::string deadlock() const {
        unsigned at_sync = 0, at_warp = 0, returned = 0, warp = 0;
        for (const Fiber& f : fibers) {
            if (f.state == Fiber::DONE) ++returned;
            else if (f.on == &block_barrier) ++at_sync;
            else {
                ++at_warp;
                warp = f.linear / 32;
            }
        }
        std::string msg = fmt("kernel `%s` block (%u, %u, %u) of %zu threads never finishes: %u wait at __syncthreads, %u "
                              "have returned",
                              launch->kernel->name, blockIdx.x, blockIdx.y, blockIdx.z, fibers.size(), at_sync, returned);
        if (at_warp)
            msg += fmt(", %u wait in a warp shuffle (e.g. warp %u: %u of %u lanes arrived)", at_warp, warp,
                       warp_barriers[warp].count, warp_barriers[warp].need);
        return msg;
    }
};

__thread Worker* tl_worker;

// A kernel that touches unmapped memory (or overflows its fiber stack) kills the process,
// as on a GPU; first this handler says which kernel, block and thread did it. Faults
// outside a kernel go to the handler that was there before (Rust's stack-overflow report).
struct sigaction previous_segv, previous_bus;

void on_fault(int sig, siginfo_t* info, void* ctx) {
    Worker* w = tl_worker;
    if (w && w->current) {
        char buf[512];
        int n = snprintf(buf, sizeof buf,
                         "cuda-sim: kernel `%s` block (%u, %u, %u) thread (%u, %u, %u) touched unmapped memory at %p "
                         "(an out-of-bounds index, or a fiber stack overflow)\n",
                         w->launch->kernel->name, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x, threadIdx.y, threadIdx.z,
                         info->si_addr);
        if (n > 0) (void)!write(2, buf, (size_t)n);
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    struct sigaction& prev = sig == SIGSEGV ? previous_segv : previous_bus;
    if (prev.sa_flags & SA_SIGINFO) {
        prev.sa_sigaction(sig, info, ctx);
    } else if (prev.sa_handler != SIG_IGN && prev.sa_handler != SIG_DFL) {
        prev.sa_handler(sig);
    } else {
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

void install_fault_handler() {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &previous_segv);
    sigaction(SIGBUS, &sa, &previous_bus);
}

// A signal stack for a helper thread, so the handler runs even when a fiber stack overflowed.
void give_signal_stack() {
    stack_t ss;
    ss.ss_size = 64 << 10;
    ss.ss_sp = malloc(ss.ss_size);  // for the thread's lifetime
    ss.ss_flags = 0;
    if (ss.ss_sp) sigaltstack(&ss, nullptr);
}

// Take blocks of `l` until none are left or one fails.
void run_blocks(Launch& l, Worker& w) {
    tl_worker = &w;
    w.launch = &l;
    gridDim = l.grid;
    blockDim = l.block;
    while (!l.failed.load(std::memory_order_relaxed)) {
        const uint64_t b = l.next.fetch_add(1);
        if (b >= l.total) break;
        if (!w.run_block(b)) l.fail(w.error);
    }
    w.launch = nullptr;
    tl_worker = nullptr;
}

// Helper threads that join launches with more than one block.
struct Pool {
    std::mutex mu;
    std::condition_variable wake, idle;
    Launch* job = nullptr;
    uint64_t epoch = 0;
    unsigned open = 0, joined = 0, finished = 0;
    unsigned helpers = 0;

    Pool() {
        unsigned n = std::thread::hardware_concurrency();
        if (const char* e = getenv("BEIT_SIM_THREADS")) n = (unsigned)atoi(e);
        helpers = n > 1 ? n - 1 : 0;
        for (unsigned i = 0; i < helpers; ++i) std::thread([this] { serve(); }).detach();
    }

    void serve() {
        give_signal_stack();
        Worker mine;
        uint64_t seen = 0;
        for (;;) {
            std::unique_lock<std::mutex> lk(mu);
            wake.wait(lk, [&] { return epoch != seen && open > 0; });
            seen = epoch;
            --open;
            ++joined;
            Launch* l = job;
            lk.unlock();
            run_blocks(*l, mine);
            lk.lock();
            ++finished;
            idle.notify_all();
        }
    }

    // Run `l` on the calling thread (with the caller's worker `w`) and the helpers.
    void run(Launch& l, Worker& w) {
        const unsigned want = l.total > 1 ? (unsigned)std::min<uint64_t>(helpers, l.total - 1) : 0;
        if (want) {
            std::lock_guard<std::mutex> g(mu);
            job = &l;
            ++epoch;
            open = want;
            joined = finished = 0;
        }
        if (want) wake.notify_all();
        run_blocks(l, w);
        if (want) {
            std::unique_lock<std::mutex> lk(mu);
            open = 0;  // helpers that have not woken yet stay out
            idle.wait(lk, [&] { return joined == finished; });
            job = nullptr;
        }
    }
};

// CUDA's launch limits (cuLaunchKernel's CUDA_ERROR_INVALID_VALUE cases).
std::string check_shape(const dim3& g, const dim3& b) {
    if (!g.x || !g.y || !g.z || !b.x || !b.y || !b.z) return "a grid or block dimension is 0";
    if (b.x > 1024 || b.y > 1024 || b.z > 64 || (uint64_t)b.x * b.y * b.z > kMaxThreads)
        return fmt("block (%u, %u, %u) exceeds CUDA's limits (x, y <= 1024, z <= 64, at most 1024 threads)", b.x, b.y, b.z);
    if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
        return fmt("grid (%u, %u, %u) exceeds CUDA's limits (x < 2^31, y, z <= 65535)", g.x, g.y, g.z);
    return "";
}

}  // namespace

void syncthreads() {
    Worker* w = tl_worker;
    if (!w) die("__syncthreads called outside a kernel");
    w->wait(w->block_barrier);
}

uint64_t shuffle(Shuffle kind, unsigned mask, uint64_t v, int arg, int width) {
    Worker* w = tl_worker;
    if (!w) die("a warp shuffle called outside a kernel");
    Fiber* f = w->current;
    const unsigned warp = f->linear / 32, lane = f->linear % 32;
    if (mask != 0xffffffffu) w->misuse(w->where() + fmt(": shuffle mask %#x (the simulator runs full-warp masks only)", mask));
    if (w->warp_barriers[warp].need != 32)
        w->misuse(w->where() + fmt(": full-warp shuffle in a partial warp (block of %zu threads is not a multiple of 32)",
                                   w->fibers.size()));
    if (width < 1 || width > 32 || (width & (width - 1)))
        w->misuse(w->where() + fmt(": shuffle width %d is not a power of two up to 32", width));
    uint64_t* s = &w->slots[((size_t)warp * 2 + (f->shuffles++ & 1)) * 32];
    s[lane] = v;
    w->wait(w->warp_barriers[warp]);
    const unsigned base = lane & ~(unsigned)(width - 1);
    unsigned src = lane;
    switch (kind) {
        case XOR: src = lane ^ (unsigned)arg; break;
        case DOWN: src = lane + (unsigned)arg; break;
        case IDX: src = base + ((unsigned)arg & (unsigned)(width - 1)); break;
    }
    if (src < base || src >= base + (unsigned)width) src = lane;  // outside the segment: own value
    return s[src];
}

}  // namespace beit_sim

// The fiber body: run the launch's kernel for the current thread, then hand back.
extern "C" __attribute__((visibility("hidden"), used)) void beit_sim_fiber_main() {
    using namespace beit_sim;
    Worker* w = tl_worker;
    Fiber* f = w->current;
    w->launch->kernel->thunk(w->launch->args);
    f->state = Fiber::DONE;
    ctx_swap(f->ctx, w->sched);
    die("a finished fiber was resumed");
}

extern "C" const beit_sim::Module beit_sim_modules[];
extern "C" const unsigned beit_sim_module_count;

// The kernel `name` of kernel file `module`, or null.
extern "C" const beit_sim::Entry* beit_sim_find(const char* module, const char* name) {
    for (unsigned m = 0; m < beit_sim_module_count; ++m) {
        const beit_sim::Module& mod = beit_sim_modules[m];
        if (strcmp(mod.name, module)) continue;
        for (unsigned i = 0; i < *mod.count; ++i)
            if (!strcmp(mod.kernels[i].name, name)) return &mod.kernels[i];
    }
    return nullptr;
}

// Run `kernel` over grid × block with CUDA-style `args` (one pointer per parameter value),
// to completion. 0 on success; else 1 with a message in `err` (NUL-terminated, at most
// `cap` bytes).
extern "C" int beit_sim_launch(const beit_sim::Entry* kernel, const unsigned grid[3], const unsigned block[3],
                               void* const* args, char* err, size_t cap) {
    using namespace beit_sim;
    static bool handler = (install_fault_handler(), true);
    (void)handler;
    static Pool* pool = new Pool();      // never freed: its threads are detached
    static Worker* caller = new Worker();  // the launching thread's, whichever it is
    static std::mutex serial;            // one stream: launches run one after another
    std::lock_guard<std::mutex> g(serial);
    Launch l;
    l.kernel = kernel;
    l.grid = dim3{grid[0], grid[1], grid[2]};
    l.block = dim3{block[0], block[1], block[2]};
    l.args = args;
    std::string bad = check_shape(l.grid, l.block);
    if (bad.empty()) {
        l.total = (uint64_t)l.grid.x * l.grid.y * l.grid.z;
        pool->run(l, *caller);
        bad = l.error;
    } else {
        bad = fmt("kernel `%s`: ", kernel->name) + bad;
    }
    if (bad.empty()) return 0;
    snprintf(err, cap, "%s", bad.c_str());
    return 1;
}
