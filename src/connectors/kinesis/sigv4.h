// AWS Signature Version 4 (the "Authorization: AWS4-HMAC-SHA256 ..." header), with OpenSSL.
//
//   SigV4Request r{.method = "POST", .path = "/", .headers = {{"Host", host},
//                  {"X-Amz-Date", "20150830T123600Z"}}, .payload = body};
//   std::string auth = SigV4Authorization(r, credentials, "eu-west-1", "kinesis");
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace sluice::kinesis_internal {

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty: long-term credentials
};

struct SigV4Request {
  std::string method;
  std::string path = "/";  // already URI-encoded
  std::string query;       // "a=1&b=2", already encoded
  std::vector<std::pair<std::string, std::string>>
      headers;  // all signed; must hold Host, X-Amz-Date
  std::string payload;
};

std::string Hex(absl::string_view bytes);
std::string Sha256Hex(absl::string_view data);
std::string HmacSha256(absl::string_view key, absl::string_view data);

// The canonical request of the SigV4 specification, and the header names it signs ("a;b;c").
std::string CanonicalRequest(const SigV4Request& request, std::string* signed_headers);
// The derived signing key (kSigning) for a date "YYYYMMDD".
std::string SigningKey(absl::string_view secret, absl::string_view date, absl::string_view region,
                       absl::string_view service);
// The value of the Authorization header. The request's X-Amz-Date header gives the time.
std::string SigV4Authorization(const SigV4Request& request, const AwsCredentials& credentials,
                               absl::string_view region, absl::string_view service);
// "YYYYMMDDTHHMMSSZ" for a Unix time in seconds.
std::string AmzDate(int64_t unix_seconds);

}  // namespace sluice::kinesis_internal
