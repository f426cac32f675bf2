// The status page's script and style sheet (status_page.h), compiled in: the page loads
// nothing from elsewhere, so it works on a farm without Internet access.
#ifndef FARM_SCHEDULER_SERVER_STATUS_ASSETS_H_
#define FARM_SCHEDULER_SERVER_STATUS_ASSETS_H_

#include "absl/strings/string_view.h"

namespace farm::scheduler::server {

// /static/status.js: fetches the JSON endpoints (with the session's token, if any) and fills
// the pages with DOM nodes and textContent only, never innerHTML.
absl::string_view StatusScript();
// /static/status.css.
absl::string_view StatusStyle();

}  // namespace farm::scheduler::server

#endif  // FARM_SCHEDULER_SERVER_STATUS_ASSETS_H_
