// A tiny blocking HTTP/1.1 server on 127.0.0.1 (POSIX sockets) for the tests:
// records every request (method, path, lower-cased headers, body) and answers
// each with a configurable status after an optional delay, then closes the
// connection.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace testing_support {

struct ReceivedRequest {
    std::string method;
    std::string path;
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
};

class LoopbackCollector {
public:
    explicit LoopbackCollector(int status = 200, std::chrono::milliseconds delay = std::chrono::milliseconds(0))
        : status_(status), delay_(delay) {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (listen_fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, 16) != 0) {
            const std::string err = std::strerror(errno);
            ::close(listen_fd_);
            throw std::runtime_error("bind/listen on 127.0.0.1: " + err);
        }
        socklen_t len = sizeof addr;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }

    ~LoopbackCollector() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
        ::close(listen_fd_);
    }

    LoopbackCollector(const LoopbackCollector&) = delete;
    LoopbackCollector& operator=(const LoopbackCollector&) = delete;

    int port() const { return port_; }
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/report"; }

    std::vector<ReceivedRequest> requests() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_;
    }

    std::size_t count() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_.size();
    }

    /// Waits until at least `n` requests arrived or `timeout` passed; returns all received.
    std::vector<ReceivedRequest> wait_for(std::size_t n, std::chrono::milliseconds timeout) const {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
        return requests_;
    }

private:
    void serve() {
        for (;;) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                if (stop_) return;
            }
            pollfd p{listen_fd_, POLLIN, 0};
            const int r = ::poll(&p, 1, 50);
            if (r <= 0) continue;
            const int fd = ::accept(listen_fd_, nullptr, nullptr);
            if (fd < 0) continue;
            timeval tv{5, 0};
            ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
            handle(fd);
            ::close(fd);
        }
    }

    static bool read_more(int fd, std::string& buf) {
        char chunk[4096];
        const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) return false;
        buf.append(chunk, static_cast<std::size_t>(n));
        return true;
    }

    static std::string lower(std::string s) {
        std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        return s;
    }

    static std::string trim(const std::string& s) {
        const auto b = s.find_first_not_of(" \t");
        const auto e = s.find_last_not_of(" \t\r");
        return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
    }

    void handle(int fd) {
        std::string buf;
        std::size_t header_end;
        while ((header_end = buf.find("\r\n\r\n")) == std::string::npos) {
            if (!read_more(fd, buf) || buf.size() > (1u << 20)) return;
        }
        ReceivedRequest req;
        const std::string head = buf.substr(0, header_end);
        std::string rest = buf.substr(header_end + 4);
        std::size_t line_end = head.find("\r\n");
        const std::string request_line = head.substr(0, line_end);
        const auto sp1 = request_line.find(' ');
        const auto sp2 = request_line.find(' ', sp1 + 1);
        if (sp1 == std::string::npos || sp2 == std::string::npos) return;
        req.method = request_line.substr(0, sp1);
        req.path = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
        while (line_end != std::string::npos) {
            const std::size_t start = line_end + 2;
            line_end = head.find("\r\n", start);
            const std::string line = head.substr(start, line_end == std::string::npos ? std::string::npos : line_end - start);
            const auto colon = line.find(':');
            if (colon != std::string::npos) req.headers[lower(line.substr(0, colon))] = trim(line.substr(colon + 1));
        }
        if (req.headers.count("content-length")) {
            const std::size_t want = std::stoul(req.headers["content-length"]);
            while (rest.size() < want) {
                if (!read_more(fd, rest)) return;
            }
            req.body = rest.substr(0, want);
        } else if (lower(req.headers["transfer-encoding"]) == "chunked") {
            std::size_t pos = 0;
            for (;;) {
                std::size_t eol;
                while ((eol = rest.find("\r\n", pos)) == std::string::npos) {
                    if (!read_more(fd, rest)) return;
                }
                const std::size_t size = std::stoul(rest.substr(pos, eol - pos), nullptr, 16);
                while (rest.size() < eol + 2 + size + 2) {
                    if (!read_more(fd, rest)) return;
                }
                if (size == 0) break;
                req.body += rest.substr(eol + 2, size);
                pos = eol + 2 + size + 2;
            }
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            requests_.push_back(std::move(req));
        }
        cv_.notify_all();
        if (delay_.count() > 0) {
            std::unique_lock<std::mutex> lock(mutex_);
            cv_.wait_for(lock, delay_, [&] { return stop_; });
        }
        const std::string body = "ok";
        const std::string reply = "HTTP/1.1 " + std::to_string(status_) + " Test\r\nContent-Type: text/plain\r\nContent-Length: " +
                                  std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
        ::send(fd, reply.data(), reply.size(), MSG_NOSIGNAL);
        ::shutdown(fd, SHUT_WR);
    }

    int listen_fd_ = -1;
    int port_ = 0;
    int status_;
    std::chrono::milliseconds delay_;
    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    bool stop_ = false;
    std::vector<ReceivedRequest> requests_;
    std::thread thread_;
};

}  // namespace testing_support
