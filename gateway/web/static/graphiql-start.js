// Starts GraphiQL on the gateway's GraphiQL page. A file of its own, not an inline script:
// the page's Content-Security-Policy allows scripts of the gateway only.
// A token pasted into the headers tab ({"Authorization": "Bearer …"}) is sent along.
const fetcher = GraphiQL.createFetcher({ url: window.location.pathname });
ReactDOM.createRoot(document.getElementById("graphiql")).render(
  React.createElement(GraphiQL, {
    fetcher,
    defaultEditorToolbarOpen: true,
    defaultQuery: "{\n  health {\n    status\n    services { name status outboxPending }\n  }\n}\n",
  }));
