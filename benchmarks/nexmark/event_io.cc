#include "event_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace nexmark {
namespace {

template <size_t N>
void Put(const FixedString<N>& s, std::string* out) {
  out->append(s.data, s.size);
}

struct Fields {
  std::string_view f[12];
  int n = 0;
};

bool Split(std::string_view line, Fields& out) {
  out.n = 0;
  size_t start = 0;
  while (true) {
    size_t comma = line.find(',', start);
    if (out.n == 12) return false;
    if (comma == std::string_view::npos) {
      out.f[out.n++] = line.substr(start);
      return true;
    }
    out.f[out.n++] = line.substr(start, comma - start);
    start = comma + 1;
  }
}

const char* const kPersonNames[] = {"tag",  "id",    "name",      "email", "credit_card",
                                    "city", "state", "date_time", "extra"};
const char* const kAuctionNames[] = {"tag",         "id",       "item_name", "description",
                                     "initial_bid", "reserve",  "date_time", "expires",
                                     "seller",      "category", "extra"};
const char* const kBidNames[] = {"tag",     "auction", "bidder",    "price",
                                 "channel", "url",     "date_time", "extra"};

absl::Status Int(const Fields& f, int i, const char* const* names, int64_t* v) {
  std::string_view s = f.f[i];
  if (s.empty() || !absl::SimpleAtoi(absl::string_view(s.data(), s.size()), v) || *v < 0 ||
      s[0] == '+' || s[0] == ' ') {
    return absl::InvalidArgumentError(absl::StrCat(
        "field ", i + 1, " (", names[i], "): expected a non-negative integer, got '", Av(s), "'"));
  }
  return absl::OkStatus();
}

template <size_t N>
absl::Status Str(const Fields& f, int i, const char* const* names, FixedString<N>* out) {
  std::string_view s = f.f[i];
  if (s.size() > N) {
    return absl::InvalidArgumentError(absl::StrCat("field ", i + 1, " (", names[i], ") has ",
                                                   s.size(),
                                                   " characters; this runner keeps at "
                                                   "most ",
                                                   N));
  }
  if (s.find('"') != std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("field ", i + 1, " (", names[i], ") contains a quote"));
  }
  out->Assign(s);
  return absl::OkStatus();
}

absl::Status Count(const Fields& f, int want, const char* kind) {
  if (f.n != want) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, " line: expected ", want, " fields, got ", f.n));
  }
  return absl::OkStatus();
}

}  // namespace

void AppendEventLine(const Event& event, std::string* out) {
  switch (event.index()) {
    case 0: {
      const Person& p = std::get<0>(event);
      absl::StrAppend(out, "P,", p.id, ",");
      Put(p.name, out);
      out->push_back(',');
      Put(p.email, out);
      out->push_back(',');
      Put(p.credit_card, out);
      out->push_back(',');
      Put(p.city, out);
      out->push_back(',');
      Put(p.state, out);
      absl::StrAppend(out, ",", p.date_time, ",");
      Put(p.extra, out);
      break;
    }
    case 1: {
      const Auction& a = std::get<1>(event);
      absl::StrAppend(out, "A,", a.id, ",");
      Put(a.item_name, out);
      out->push_back(',');
      Put(a.description, out);
      absl::StrAppend(out, ",", a.initial_bid, ",", a.reserve, ",", a.date_time, ",", a.expires,
                      ",", a.seller, ",", a.category, ",");
      Put(a.extra, out);
      break;
    }
    default: {
      const Bid& b = std::get<2>(event);
      absl::StrAppend(out, "B,", b.auction, ",", b.bidder, ",", b.price, ",");
      Put(b.channel, out);
      out->push_back(',');
      Put(b.url, out);
      absl::StrAppend(out, ",", b.date_time, ",");
      Put(b.extra, out);
      break;
    }
  }
  out->push_back('\n');
}

absl::Status ParseEventLine(std::string_view line, Event* event) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  Fields f;
  if (line.empty()) return absl::InvalidArgumentError("empty line");
  if (!Split(line, f)) return absl::InvalidArgumentError("too many fields");
  if (f.f[0] == "P") {
    SLUICE_RETURN_IF_ERROR(Count(f, 9, "person"));
    Person& p = event->emplace<0>();
    const char* const* n = kPersonNames;
    SLUICE_RETURN_IF_ERROR(Int(f, 1, n, &p.id));
    SLUICE_RETURN_IF_ERROR(Str(f, 2, n, &p.name));
    SLUICE_RETURN_IF_ERROR(Str(f, 3, n, &p.email));
    SLUICE_RETURN_IF_ERROR(Str(f, 4, n, &p.credit_card));
    SLUICE_RETURN_IF_ERROR(Str(f, 5, n, &p.city));
    SLUICE_RETURN_IF_ERROR(Str(f, 6, n, &p.state));
    SLUICE_RETURN_IF_ERROR(Int(f, 7, n, &p.date_time));
    return Str(f, 8, n, &p.extra);
  }
  if (f.f[0] == "A") {
    SLUICE_RETURN_IF_ERROR(Count(f, 11, "auction"));
    Auction& a = event->emplace<1>();
    const char* const* n = kAuctionNames;
    SLUICE_RETURN_IF_ERROR(Int(f, 1, n, &a.id));
    SLUICE_RETURN_IF_ERROR(Str(f, 2, n, &a.item_name));
    SLUICE_RETURN_IF_ERROR(Str(f, 3, n, &a.description));
    SLUICE_RETURN_IF_ERROR(Int(f, 4, n, &a.initial_bid));
    SLUICE_RETURN_IF_ERROR(Int(f, 5, n, &a.reserve));
    SLUICE_RETURN_IF_ERROR(Int(f, 6, n, &a.date_time));
    SLUICE_RETURN_IF_ERROR(Int(f, 7, n, &a.expires));
    SLUICE_RETURN_IF_ERROR(Int(f, 8, n, &a.seller));
    SLUICE_RETURN_IF_ERROR(Int(f, 9, n, &a.category));
    return Str(f, 10, n, &a.extra);
  }
  if (f.f[0] == "B") {
    SLUICE_RETURN_IF_ERROR(Count(f, 8, "bid"));
    Bid& b = event->emplace<2>();
    const char* const* n = kBidNames;
    SLUICE_RETURN_IF_ERROR(Int(f, 1, n, &b.auction));
    SLUICE_RETURN_IF_ERROR(Int(f, 2, n, &b.bidder));
    SLUICE_RETURN_IF_ERROR(Int(f, 3, n, &b.price));
    SLUICE_RETURN_IF_ERROR(Str(f, 4, n, &b.channel));
    SLUICE_RETURN_IF_ERROR(Str(f, 5, n, &b.url));
    SLUICE_RETURN_IF_ERROR(Int(f, 6, n, &b.date_time));
    return Str(f, 7, n, &b.extra);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown event tag '", Av(f.f[0]), "' (expected P, A or B)"));
}

namespace {

class FileReader : public sluice::SourceReader<Event> {
 public:
  FileReader(std::string path, std::FILE* file, bool stamp,
             std::shared_ptr<std::atomic<int64_t>> lines_read)
      : path_(std::move(path)), file_(file), stamp_(stamp), lines_read_(std::move(lines_read)) {
    buffer_.resize(1 << 20);
  }
  ~FileReader() override { Close(); }

  absl::StatusOr<sluice::PollResult> PollNext(sluice::Collector<Event>& out,
                                              int max_records) override {
    int64_t now = stamp_ ? NowMicros() : sluice::kNoTimestamp;
    Event event;
    int emitted = 0;
    struct Count {
      std::atomic<int64_t>* to;
      int* n;
      ~Count() {
        if (to != nullptr) to->fetch_add(*n, std::memory_order_relaxed);
      }
    } count{lines_read_.get(), &emitted};
    for (int i = 0; i < max_records; ++i) {
      std::string_view line;
      if (!NextLine(&line)) {
        if (std::ferror(file_) != 0) {
          return absl::DataLossError(absl::StrCat(path_, ": read error: ", std::strerror(errno)));
        }
        return sluice::PollResult::End();
      }
      ++line_number_;
      if (absl::Status s = ParseEventLine(line, &event); !s.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ":", line_number_, ": ", s.message()));
      }
      out.CollectWithTimestamp(event, now);
      ++emitted;
    }
    return sluice::PollResult::More();
  }

  void Close() override {
    if (file_ != nullptr) std::fclose(file_);
    file_ = nullptr;
  }

  absl::StatusOr<std::string> SnapshotState(int64_t) override {
    return absl::StrCat(offset_, ",", line_number_);
  }
  absl::Status RestoreState(std::string_view state) override {
    size_t comma = state.find(',');
    int64_t offset = 0, line = 0;
    if (comma == std::string_view::npos ||
        !absl::SimpleAtoi(absl::string_view(state.data(), comma), &offset) ||
        !absl::SimpleAtoi(absl::string_view(state.data() + comma + 1, state.size() - comma - 1),
                          &line) ||
        std::fseek(file_, static_cast<long>(offset), SEEK_SET) != 0) {
      return absl::DataLossError(
          absl::StrCat(path_, ": bad checkpointed position '", Av(state), "'"));
    }
    offset_ = offset;
    line_number_ = line;
    begin_ = end_ = 0;
    return absl::OkStatus();
  }

 private:
  // The next line without its '\n'; false at end of file. A last line without '\n' counts.
  bool NextLine(std::string_view* line) {
    while (true) {
      const char* start = buffer_.data() + begin_;
      const void* nl = std::memchr(start, '\n', end_ - begin_);
      if (nl != nullptr) {
        size_t len = static_cast<const char*>(nl) - start;
        *line = std::string_view(start, len);
        begin_ += len + 1;
        offset_ += static_cast<int64_t>(len + 1);
        return true;
      }
      if (eof_) {
        if (begin_ == end_) return false;
        *line = std::string_view(start, end_ - begin_);
        offset_ += static_cast<int64_t>(end_ - begin_);
        begin_ = end_;
        return true;
      }
      // Move the partial line to the front and read more.
      size_t rest = end_ - begin_;
      std::memmove(buffer_.data(), start, rest);
      begin_ = 0;
      end_ = rest;
      if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);
      size_t got = std::fread(buffer_.data() + end_, 1, buffer_.size() - end_, file_);
      end_ += got;
      if (got == 0) eof_ = true;
    }
  }

  std::string path_;
  std::FILE* file_;
  bool stamp_;
  std::shared_ptr<std::atomic<int64_t>> lines_read_;
  std::vector<char> buffer_;
  size_t begin_ = 0;
  size_t end_ = 0;
  bool eof_ = false;
  int64_t offset_ = 0;
  int64_t line_number_ = 0;
};

}  // namespace

absl::StatusOr<std::unique_ptr<sluice::SourceReader<Event>>> EventFileSource::CreateReader(
    const sluice::SourceContext&) {
  std::FILE* f = std::fopen(path_.c_str(), "rb");
  if (f == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("cannot open event file ", path_, ": ", std::strerror(errno)));
  }
  return std::unique_ptr<sluice::SourceReader<Event>>(
      new FileReader(path_, f, stamp_, lines_read_));
}

absl::Status WriteEventFile(const GeneratorConfig& config, const std::string& path) {
  SLUICE_RETURN_IF_ERROR(config.Validate());
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return absl::NotFoundError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  }
  Generator gen(config);
  std::string buf;
  for (int64_t n = 0; n < config.events; ++n) {
    AppendEventLine(gen.Generate(n), &buf);
    if (buf.size() > (1 << 20) || n + 1 == config.events) {
      if (std::fwrite(buf.data(), 1, buf.size(), f) != buf.size()) {
        std::fclose(f);
        return absl::DataLossError(absl::StrCat("write to ", path, " failed"));
      }
      buf.clear();
    }
  }
  if (std::fclose(f) != 0) return absl::DataLossError(absl::StrCat("closing ", path, " failed"));
  return absl::OkStatus();
}

}  // namespace nexmark
